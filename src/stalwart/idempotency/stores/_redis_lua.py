# Store engineer's file: see git log before rewriting.
"""The Lua scripts of :class:`~stalwart.idempotency.stores.redis.RedisStore`, one per transition (spec §2.16.3).

Each script reads the store clock with ``TIME`` (integer microseconds), mirrors the pure decisions of
:mod:`stalwart.idempotency._record` line for line, and writes the record together with its TTL (``PEXPIREAT`` of
``expires_at``, rounded up to the millisecond). Every key a script touches is passed in ``KEYS`` and shares one hash
tag, so the scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

from stalwart.idempotency._record import SCHEMA_VERSION

__all__ = [
    "ABANDON",
    "ABANDONED_ONE",
    "CLAIM",
    "COMPLETE",
    "GET",
    "HEARTBEAT",
    "PURGE_ONE",
    "RELEASE",
]


# Record hash fields: st state, fp fingerprint, fv fp_version, ow owner_token, fe fence, at attempt, le lease expiry,
# cr created, up updated, co completed, ex expires_at (times in integer microseconds of TIME), oc outcome,
# sc status, hd headers (encode_headers), bd body, om body_omitted (0/1), sv schema version.
# Numbers are handed to redis.call as Lua numbers, which Redis formats with %.17g (exact for integers below 2^53);
# never tostring() or `..` them (Lua 5.1 keeps 14 digits).

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS: record, fence counter, expiry index, abandoned index.
# ARGV: record_id, fingerprint, fp_version, owner_token, lease_us, retention_us, reclaim (1/0), shards, shard,
#       index_grace_us.
CLAIM = (
    _NOW
    + """
local key, id = KEYS[1], ARGV[1]
local cur = redis.call('HMGET', key, 'st', 'fp', 'fv', 'ow', 'le', 'ex', 'at')
local function take(attempt)
  local lease = now + tonumber(ARGV[5])
  local expires = lease + tonumber(ARGV[6])
  local fence = redis.call('INCR', KEYS[2]) * tonumber(ARGV[8]) + tonumber(ARGV[9])
  redis.call('HSET', key, 'st', 'in_progress', 'ow', ARGV[4], 'fe', fence, 'at', attempt, 'le', lease, 'up', now,
             'ex', expires)
  redis.call('HDEL', key, 'oc')
  redis.call('PEXPIREAT', key, math.ceil(expires / 1000))
  redis.call('ZADD', KEYS[3], expires, id)
  if cur[1] == 'abandoned' then redis.call('ZREM', KEYS[4], id) end
  return {1, now, redis.call('HGETALL', key)}
end
if not cur[1] or tonumber(cur[6]) <= now then
  -- absent, or past its retention (treated as absent): a new record
  redis.call('DEL', key)
  redis.call('HSET', key, 'fp', ARGV[2], 'fv', ARGV[3], 'cr', now, 'om', 0, 'sv', @SV@)
  -- index entries far past their expiry belong to keys Redis has expired by itself
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[10]))
  return take(1)
end
if cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] then
  return {0, now, redis.call('HGETALL', key)}
end
if cur[1] == 'in_progress' then
  if cur[4] == ARGV[4] then return {1, now, redis.call('HGETALL', key)} end
  if tonumber(cur[5]) < now then
    if ARGV[7] == '1' then return take(tonumber(cur[7]) + 1) end
    redis.call('HSET', key, 'st', 'abandoned', 'oc', 'unknown', 'up', now)
    redis.call('ZADD', KEYS[4], now, id)
  end
elseif cur[1] == 'abandoned' and ARGV[7] == '1' then
  return take(tonumber(cur[7]) + 1)
end
return {0, now, redis.call('HGETALL', key)}
""".replace("@SV@", str(SCHEMA_VERSION))
)

# KEYS: record, expiry index. ARGV: record_id, owner_token, fence, lease_us, retention_us.
HEARTBEAT = (
    _NOW
    + """
local cur = redis.call('HMGET', KEYS[1], 'st', 'ow', 'fe', 'ex')
if cur[1] ~= 'in_progress' or cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] or tonumber(cur[4]) <= now then return 0 end
local lease = now + tonumber(ARGV[4])
local expires = math.max(tonumber(cur[4]), lease + tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'le', lease, 'up', now, 'ex', expires)
redis.call('PEXPIREAT', KEYS[1], math.ceil(expires / 1000))
redis.call('ZADD', KEYS[2], expires, ARGV[1])
return 1
"""
)

# KEYS: record, expiry index, abandoned index.
# ARGV: record_id, owner_token, fence, retention_us, outcome, status, headers, body, body_omitted (1/0).
COMPLETE = (
    _NOW
    + """
local cur = redis.call('HMGET', KEYS[1], 'st', 'ow', 'fe', 'ex')
if not cur[1] or cur[1] == 'completed' or cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] or tonumber(cur[4]) <= now then
  return 0
end
local expires = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'st', 'completed', 'up', now, 'co', now, 'ex', expires, 'oc', ARGV[5], 'sc', ARGV[6],
           'hd', ARGV[7], 'bd', ARGV[8], 'om', ARGV[9])
redis.call('PEXPIREAT', KEYS[1], math.ceil(expires / 1000))
redis.call('ZADD', KEYS[2], expires, ARGV[1])
if cur[1] == 'abandoned' then redis.call('ZREM', KEYS[3], ARGV[1]) end
return 1
"""
)

# KEYS: record, expiry index, abandoned index. ARGV: record_id, owner_token, fence.
RELEASE = (
    _NOW
    + """
local cur = redis.call('HMGET', KEYS[1], 'st', 'ow', 'fe', 'ex')
if not cur[1] or cur[1] == 'completed' or cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] or tonumber(cur[4]) <= now then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)

# KEYS: record, abandoned index. ARGV: record_id, owner_token, fence.
ABANDON = (
    _NOW
    + """
local cur = redis.call('HMGET', KEYS[1], 'st', 'ow', 'fe', 'ex')
if cur[1] ~= 'in_progress' or cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] or tonumber(cur[4]) <= now then return 0 end
redis.call('HSET', KEYS[1], 'st', 'abandoned', 'oc', 'unknown', 'up', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 1
"""
)

# KEYS: record. Returns {now, fields} (no fields when absent or past its retention).
GET = (
    _NOW
    + """
local ex = redis.call('HGET', KEYS[1], 'ex')
if not ex or tonumber(ex) <= now then return {now, {}} end
return {now, redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: record, expiry index, abandoned index. ARGV: record_id. Returns 1 when an expired record was purged (by this
# call, or earlier by Redis's own expiry), 0 when the record is live (its index entry is corrected) or already gone.
PURGE_ONE = (
    _NOW
    + """
local ex = redis.call('HGET', KEYS[1], 'ex')
if ex and tonumber(ex) > now then
  redis.call('ZADD', KEYS[2], ex, ARGV[1])
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('ZREM', KEYS[2], ARGV[1])
"""
)

# KEYS: record, abandoned index. ARGV: record_id. Returns the fields of a live abandoned record; drops stale entries.
ABANDONED_ONE = (
    _NOW
    + """
local cur = redis.call('HMGET', KEYS[1], 'st', 'ex')
if cur[1] == 'abandoned' and tonumber(cur[2]) > now then return redis.call('HGETALL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return {}
"""
)
