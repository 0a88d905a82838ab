#!/usr/bin/env bash
# Makes sure Redis and PostgreSQL are reachable for the test suite (REDIS_URL / DATABASE_URL; see README.md).
# - running: nothing to do;
# - installed but stopped: start them;
# - not installed: install them with apt-get, or stop with a message saying what to install.
# Creates the `test` database when it is missing. Only loopback addresses are used.
set -uo pipefail

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}

redis_up() { redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; }
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

install_pkgs() {
  if command -v apt-get >/dev/null 2>&1; then
    echo "ensure-services: installing $* with apt-get"
    as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
  else
    echo "ensure-services: please install $* (no apt-get on this machine)" >&2
    return 1
  fi
}

fail=0

# --- Redis -------------------------------------------------------------------------------
if ! redis_up; then
  command -v redis-server >/dev/null 2>&1 || install_pkgs redis-server || fail=1
  if command -v redis-server >/dev/null 2>&1; then
    echo "ensure-services: starting redis-server"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp >/dev/null
    for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || { echo "ensure-services: Redis is not reachable at $REDIS_URL" >&2; fail=1; }
fi

# --- PostgreSQL --------------------------------------------------------------------------
if ! pg_up; then
  command -v pg_ctlcluster >/dev/null 2>&1 || install_pkgs postgresql || fail=1
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "ensure-services: starting PostgreSQL $ver"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    for _ in $(seq 1 100); do pg_up && break; sleep 0.1; done
  fi
  pg_up || { echo "ensure-services: PostgreSQL is not reachable on 127.0.0.1:5432 (install postgresql)" >&2; fail=1; }
fi

if pg_up; then
  dbname=${DATABASE_URL##*/}; dbname=${dbname%%\?*}
  base=${DATABASE_URL%/*}
  if ! psql "$DATABASE_URL" -Atc 'select 1' >/dev/null 2>&1; then
    echo "ensure-services: creating database $dbname"
    psql "$base/postgres" -qc "CREATE DATABASE \"$dbname\"" >/dev/null 2>&1 \
      || as_root su postgres -c "createdb $dbname" 2>/dev/null || true
  fi
fi

if [ "$fail" != 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "ensure-services: a service the tests need is unavailable; with CI=true this is a failure" >&2
    exit 1
  fi
  echo "ensure-services: some services are unavailable; their integration tests will be skipped" >&2
fi
exit 0
