# Store engineer's file: see git log before rewriting.
"""SQL of :class:`~stalwart.idempotency.stores.postgres.PostgresStore` and the row decoder (spec §2.16.4).

Statements are rendered once per store, with the schema, table and sequence names quoted by ``psycopg.sql``, to
bytes (psycopg then prepares the frequent ones on the server after a few executions). Durations are float seconds
multiplied by ``interval '1 second'``; times are ``timestamptz`` on the server's clock (``now()``, or
``clock_timestamp()`` after a lock wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from stalwart.idempotency._record import (
    SCHEMA_VERSION,
    Record,
    StoredResponse,
    encode_headers,
)
from stalwart.idempotency.stores._common import decode_record_row

__all__ = ["COLUMN_COUNT", "Statements", "decode_row", "render", "response_params"]

_COLUMNS = (
    "record_id, state, fingerprint, fp_version, owner_token, fence, attempt, lease_expires_at, created_at, "
    "updated_at, expires_at, completed_at, outcome, status, headers, body, body_omitted, schema_version"
)
COLUMN_COUNT = 18

# Templates: {t} the table, {seq} the fence sequence (as a regclass literal), {c} the column list; {schema},
# {seq_name} and {idx_*} only in the DDL, {t_literal} and {seq_literal} (text) only in `exists`.
# Named parameters are psycopg's %(name)s.
_TEMPLATES: dict[str, str] = {
    "ddl": """
        CREATE SCHEMA IF NOT EXISTS {schema};
        CREATE SEQUENCE IF NOT EXISTS {seq_name};
        CREATE TABLE IF NOT EXISTS {t} (
            record_id text PRIMARY KEY,
            state text NOT NULL CHECK (state IN ('in_progress', 'completed', 'abandoned')),
            fingerprint bytea NOT NULL,
            fp_version integer NOT NULL,
            owner_token text NOT NULL,
            fence bigint NOT NULL,
            attempt integer NOT NULL,
            lease_expires_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            completed_at timestamptz,
            outcome text,
            status integer,
            headers bytea NOT NULL DEFAULT '',
            body bytea NOT NULL DEFAULT '',
            body_omitted boolean NOT NULL DEFAULT false,
            schema_version integer NOT NULL);
        CREATE INDEX IF NOT EXISTS {idx_expires} ON {t} (expires_at);
        CREATE INDEX IF NOT EXISTS {idx_abandoned} ON {t} (updated_at) WHERE state = 'abandoned'""",
    "exists": "SELECT to_regclass({t_literal}) IS NOT NULL AND to_regclass({seq_literal}) IS NOT NULL",
    # Claim, phase 1 (one autocommit statement): read the committed record, and insert only when the statement's
    # snapshot has none. A replay therefore costs a primary-key read: no nextval(), no speculative insertion. A row
    # committed (or still being inserted) by a concurrent claim after the snapshot makes the insert conflict (it
    # waits for that transaction first) while `cur` does not see it: no row comes back, and the caller goes on to
    # phase 2, which reads the row under a lock. The fence is drawn only when the insert is attempted (gaps from
    # such conflicts are harmless: fences only have to increase).
    "claim": """
        WITH cur AS (SELECT {c} FROM {t} WHERE record_id = %(rid)s),
        ins AS (
            INSERT INTO {t} (record_id, state, fingerprint, fp_version, owner_token, fence, attempt,
                             lease_expires_at, created_at, updated_at, expires_at, schema_version)
            SELECT %(rid)s, 'in_progress', %(fp)s, %(fpv)s, %(owner)s, nextval({seq}), 1,
                   now() + %(lease)s * interval '1 second', now(), now(),
                   now() + (%(lease)s + %(retention)s) * interval '1 second', %(sv)s
            WHERE NOT EXISTS (SELECT 1 FROM cur)
            ON CONFLICT (record_id) DO NOTHING
            RETURNING {c})
        SELECT true, now(), * FROM ins
        UNION ALL
        SELECT false, now(), * FROM cur""",
    # Claim, phase 2 (in a short transaction): lock the row, then write what decide_claim chose.
    "lock_row": "SELECT {c}, clock_timestamp() FROM {t} WHERE record_id = %s FOR UPDATE",
    "reinsert": """
        UPDATE {t} SET state = 'in_progress', fingerprint = %(fp)s, fp_version = %(fpv)s, owner_token = %(owner)s,
            fence = nextval({seq}), attempt = 1, lease_expires_at = %(now)s + %(lease)s * interval '1 second',
            created_at = %(now)s, updated_at = %(now)s,
            expires_at = %(now)s + (%(lease)s + %(retention)s) * interval '1 second', completed_at = NULL,
            outcome = NULL, status = NULL, headers = '', body = '', body_omitted = false, schema_version = %(sv)s
        WHERE record_id = %(rid)s RETURNING {c}""",
    "reclaim": """
        UPDATE {t} SET state = 'in_progress', outcome = NULL, owner_token = %(owner)s, fence = nextval({seq}),
            attempt = attempt + 1, lease_expires_at = %(now)s + %(lease)s * interval '1 second',
            updated_at = %(now)s, expires_at = %(now)s + (%(lease)s + %(retention)s) * interval '1 second'
        WHERE record_id = %(rid)s RETURNING {c}""",
    "abandon_expired": "UPDATE {t} SET state = 'abandoned', outcome = 'unknown', updated_at = %(now)s "
    "WHERE record_id = %(rid)s "
    "RETURNING {c}",
    # CAS writes: compare (record_id, owner_token, fence), the state, and that the record is not past retention.
    "heartbeat": """
        UPDATE {t} SET lease_expires_at = now() + %(lease)s * interval '1 second', updated_at = now(),
            expires_at = greatest(expires_at, now() + (%(lease)s + %(retention)s) * interval '1 second')
        WHERE record_id = %(rid)s AND owner_token = %(owner)s AND fence = %(fence)s
            AND state = 'in_progress' AND expires_at > now()""",
    "complete": """
        UPDATE {t} SET state = 'completed', updated_at = now(), completed_at = now(),
            expires_at = now() + %(retention)s * interval '1 second', outcome = %(outcome)s, status = %(status)s,
            headers = %(headers)s, body = %(body)s, body_omitted = %(omitted)s
        WHERE record_id = %(rid)s AND owner_token = %(owner)s AND fence = %(fence)s
            AND state <> 'completed' AND expires_at > now()""",
    "release": """
        DELETE FROM {t} WHERE record_id = %(rid)s AND owner_token = %(owner)s AND fence = %(fence)s
            AND state <> 'completed' AND expires_at > now()""",
    "abandon": """
        UPDATE {t} SET state = 'abandoned', outcome = 'unknown', updated_at = now()
        WHERE record_id = %(rid)s AND owner_token = %(owner)s AND fence = %(fence)s
            AND state = 'in_progress' AND expires_at > now()""",
    "get": "SELECT {c} FROM {t} WHERE record_id = %s AND expires_at > now()",
    "now": "SELECT now()",
    # Batched purge: lock up to %s expired rows (skipping rows a claim holds), delete them by ctid, re-checking the
    # expiry on the row actually deleted.
    "purge": """
        DELETE FROM {t} WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM {t} WHERE expires_at <= now() LIMIT %s FOR UPDATE SKIP LOCKED))
        AND expires_at <= now()""",
    "abandoned": "SELECT {c} FROM {t} WHERE state = 'abandoned' AND expires_at > now() ORDER BY updated_at LIMIT %s",
    # Transactional mode (one transaction around the handler).
    "tx_begin": """
        SELECT pg_try_advisory_xact_lock(%(lock)s), now(),
            set_config('statement_timeout', %(statement_timeout)s, true),
            set_config('lock_timeout', %(lock_timeout)s, true),
            set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, true)""",
    # Is this still the transaction that took the lock (%s: its now())? A handler may have ended it (COMMIT or
    # ROLLBACK on the connection), and the lock with it.
    "tx_same": "SELECT now() = %s",
    # The store's own limits for its insert and the COMMIT (the handler may have changed or lifted its own).
    "tx_store_limits": """
        SELECT set_config('statement_timeout', %(store_timeout)s, true),
            set_config('lock_timeout', %(store_timeout)s, true)""",
    # The COMPLETED record, only in the transaction that took the lock (%(began)s: its now()); never outside it.
    "tx_insert": """
        WITH c AS (SELECT clock_timestamp() AS ts WHERE now() = %(began)s)
        INSERT INTO {t} ({c})
        SELECT %(rid)s, 'completed', %(fp)s, %(fpv)s, %(owner)s, nextval({seq}), 1, c.ts, now(), c.ts,
            c.ts + %(retention)s * interval '1 second', c.ts, %(outcome)s, %(status)s, %(headers)s, %(body)s,
            %(omitted)s, %(sv)s FROM c
        ON CONFLICT (record_id) DO UPDATE SET state = excluded.state, fingerprint = excluded.fingerprint,
            fp_version = excluded.fp_version, owner_token = excluded.owner_token, fence = excluded.fence,
            attempt = 1, lease_expires_at = excluded.lease_expires_at, created_at = excluded.created_at,
            updated_at = excluded.updated_at, expires_at = excluded.expires_at,
            completed_at = excluded.completed_at, outcome = excluded.outcome, status = excluded.status,
            headers = excluded.headers, body = excluded.body, body_omitted = excluded.body_omitted,
            schema_version = excluded.schema_version
        WHERE {t}.expires_at <= now()
        RETURNING {c}""",
}


@dataclass(frozen=True, slots=True)
class Statements:
    """The rendered statements of one store (bytes, ready for ``cursor.execute``)."""

    ddl: bytes
    exists: bytes
    claim: bytes
    lock_row: bytes
    reinsert: bytes
    reclaim: bytes
    abandon_expired: bytes
    heartbeat: bytes
    complete: bytes
    release: bytes
    abandon: bytes
    get: bytes
    now: bytes
    purge: bytes
    abandoned: bytes
    tx_begin: bytes
    tx_same: bytes
    tx_store_limits: bytes
    tx_insert: bytes


def render(schema: str, table: str) -> Statements:
    """Render every statement for ``schema.table`` (the fence sequence is ``schema.table_fence``)."""
    seq_name = sql.Identifier(schema, f"{table}_fence")
    table_id = sql.Identifier(schema, table)
    names: dict[str, Any] = {
        "t": table_id,
        "t_literal": sql.Literal(table_id.as_string()),
        "seq": sql.SQL("{}::regclass").format(sql.Literal(seq_name.as_string())),
        "seq_name": seq_name,
        "seq_literal": sql.Literal(seq_name.as_string()),
        "schema": sql.Identifier(schema),
        "c": sql.SQL(_COLUMNS),
        "idx_expires": sql.Identifier(f"{table}_expires_idx"),
        "idx_abandoned": sql.Identifier(f"{table}_abandoned_idx"),
    }
    rendered = {name: sql.SQL(template).format(**names).as_bytes() for name, template in _TEMPLATES.items()}
    return Statements(**rendered)


def _seconds(value: Any) -> float:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamptz, got {value!r}")
    return value.timestamp()


def decode_row(row: Any) -> Record:
    """A :class:`Record` from the 18 columns of a row, in ``_COLUMNS`` order.

    Raises:
        RecordDecodeError: an unknown schema version or a malformed value.
    """
    return decode_record_row(row, _seconds)


def response_params(response: StoredResponse, retention: float) -> dict[str, Any]:
    """The parameters ``retention``, ``outcome``, ``status``, ``headers``, ``body``, ``omitted`` and ``sv``."""
    return {
        "retention": float(retention),
        "outcome": response.outcome.value,
        "status": response.status,
        "headers": encode_headers(response.headers),
        "body": b"" if response.body_omitted else response.body,
        "omitted": response.body_omitted,
        "sv": SCHEMA_VERSION,
    }
