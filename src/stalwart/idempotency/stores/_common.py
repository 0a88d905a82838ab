"""Helpers shared by the stores: the host wall clock and the decoding of a stored row into a :class:`Record`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from stalwart.idempotency._record import (
    SCHEMA_VERSION,
    Outcome,
    Record,
    RecordDecodeError,
    State,
    decode_headers,
)

# Enum members by stored value: a dict lookup instead of the enum call (KeyError for an unknown value).
STATES: dict[str, State] = {s.value: s for s in State}
OUTCOMES: dict[str, Outcome] = {o.value: o for o in Outcome}

__all__ = ["OUTCOMES", "STATES", "decode_record_row", "wall_clock"]


def wall_clock() -> float:
    """The host's wall clock as UTC epoch seconds (``float``).

    The memory and SQLite stores keep lease and retention times on the host's wall clock, as spec §2.12 says: the
    SQLite file is shared by every process on the host and outlives reboots, which a monotonic clock does not. Stores
    take a ``clock`` argument so tests can drive time by hand.
    """
    return datetime.now(UTC).timestamp()


def decode_record_row(row: Sequence[Any], seconds: Callable[[Any], float]) -> Record:
    """Build a :class:`Record` from a row in the stores' column order (SQLite and PostgreSQL share it).

    Args:
        row: record_id, state, fingerprint, fp_version, owner_token, fence, attempt, lease_expires_at, created_at,
            updated_at, expires_at, completed_at, outcome, status, headers, body, body_omitted, schema_version.
        seconds: converts a stored time to epoch seconds (``float`` for SQLite, a ``timestamptz`` for PostgreSQL).

    Raises:
        RecordDecodeError: an unknown schema version or a malformed value.
    """
    try:
        if row[17] != SCHEMA_VERSION:
            raise RecordDecodeError(f"unknown schema_version {row[17]!r}")
        return Record(
            record_id=str(row[0]),
            state=STATES[row[1]],
            fingerprint=bytes(row[2]),
            fp_version=int(row[3]),
            owner_token=str(row[4]),
            fence=int(row[5]),
            attempt=int(row[6]),
            lease_expires_at=seconds(row[7]),
            created_at=seconds(row[8]),
            updated_at=seconds(row[9]),
            expires_at=seconds(row[10]),
            completed_at=None if row[11] is None else seconds(row[11]),
            outcome=None if row[12] is None else OUTCOMES[row[12]],
            status=None if row[13] is None else int(row[13]),
            headers=decode_headers(row[14]),
            body=bytes(row[15]),
            body_omitted=bool(row[16]),
            schema_version=SCHEMA_VERSION,
        )
    except RecordDecodeError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise RecordDecodeError(f"undecodable idempotency record: {exc!r}") from exc
