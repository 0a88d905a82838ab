"""Transactional mode (spec §2.16.4, guarantee G5): the handler's writes and the record commit together.

For a route with ``IdempotencyConfig(transactional=True)`` on a store offering ``transaction()`` (PostgresStore):
the middleware opens one transaction guarded by ``pg_try_advisory_xact_lock`` (not acquired → 409 at once), answers
from any committed record (replay, 422, outcome-unknown), and otherwise runs the handler with the transaction's
connection in ``state.connection``, buffering the whole response. A response to store is committed with the
record and only then sent; a release (401/403/408/425/429/503, 5xx, an exception, a handler that never started or
asked to be released, a cancellation) rolls everything back. If the commit fails the client gets 503 and nothing
happened. No lease, heartbeat or fence: a dead session cannot commit.

The transaction's limits come from the route: ``transaction_statement_timeout``, ``transaction_lock_timeout`` and
``transaction_idle_timeout`` for the handler's statements, ``store_timeout`` for the store's insert and COMMIT. A
handler that lets one of those timeouts out (SQLSTATE 57014 query canceled, 55P03 lock not available, 25P03 idle in
transaction) is rolled back like any exception, but its client gets 503 with ``Retry-After`` (nothing was applied;
a retry may succeed) before the exception is re-raised for error reporting.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from stalwart._exceptions import StoreUnavailable

from ._execution import is_disconnect
from ._fingerprint import FP_VERSION
from ._record import Outcome, StoredResponse, classify_outcome
from ._state import IdempotencyState, _current

if TYPE_CHECKING:
    from ._answers import Answers
    from ._routing import Route

__all__ = ["is_transaction_timeout", "run_transactional"]

logger = logging.getLogger("stalwart")

_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03", "25P03"})  # query canceled, lock not available, idle in tx

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def run_transactional(
    store: Any,
    route: Route,
    *,
    app: Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]],
    scope: MutableMapping[str, Any],
    receive: Receive,
    send: Send,
    record_id: str,
    fingerprint: bytes,
    state: IdempotencyState,
    answers: Answers,
    unavailable: Callable[[], Awaitable[None]],
) -> None:
    """Serve one request in transactional mode (see the module docstring).

    ``unavailable`` answers when the store cannot decide *before* the handler runs (503, or the fail-open run).
    Once the handler has started, a ``StoreUnavailable`` never means that: one the handler raises propagates like
    any of its exceptions, a failed commit is answered 503 here (nothing was applied, and the handler must not run
    again), and a failed rollback means a broken session that the server rolls back by itself.

    Raises:
        BaseException: whatever the handler raised, after the rollback (after a 503 for a database timeout, see
            :func:`is_transaction_timeout`).
    """
    handler_started = False
    messages: list[Message] = []
    cfg = route.cfg
    limits = {
        "statement_timeout": cfg.transaction_statement_timeout,
        "lock_timeout": cfg.transaction_lock_timeout,
        "idle_timeout": cfg.transaction_idle_timeout,
        "store_timeout": route.store_timeout,
    }
    try:
        async with store.transaction(record_id, fingerprint=fingerprint, fp_version=FP_VERSION, **limits) as tx:
            if not tx.acquired:
                await answers.in_progress(send, 1)
                return
            if tx.existing is not None:
                await tx.rollback()
                await answers.existing(route, scope, send, tx.existing, fingerprint=fingerprint, store_now=tx.now)
                return
            state.connection = tx.connection
            status: int | None = None
            headers: list[tuple[bytes, bytes]] = []
            chunks: list[bytes] = []
            size = 0
            complete = False

            async def buffer(message: Message) -> None:
                nonlocal status, headers, size, complete
                messages.append(message)
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    headers = list(message.get("headers") or ())
                elif message["type"] == "http.response.body":
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        complete = True

            handler_started = True
            token = _current.set(state)
            try:
                await app(scope, receive, buffer)
            except BaseException as exc:
                if not is_transaction_timeout(exc):
                    raise
                try:
                    await tx.rollback()  # before answering: the retry must not find the key locked
                except StoreUnavailable as rollback_error:  # a broken session: the server rolls it back itself
                    logger.debug("idempotency: rollback after a database timeout failed: %r", rollback_error)
                logger.warning("idempotency: a database timeout in the transactional handler; rolled back: %r", exc)
                await answers.unavailable(send)  # nothing was applied: retry (spec §2.9, release)
                raise
            finally:
                _current.reset(token)
            decision = classify_outcome(
                status if complete else None,
                started=state.started if route.marker else True,
                exception=not complete,
                release_requested=state.release_requested,
                release_statuses=route.release_statuses,
                store_5xx=False,  # rolled back: a 5xx is safely retryable here (Crunchy)
                release_on_exception=True,
            )
            if decision == "store":
                assert status is not None
                omitted = size > route.max_stored_body
                response = StoredResponse(
                    Outcome.RESPONSE,
                    status,
                    route.header_filter.filter(headers, head=scope["method"] == "HEAD"),
                    b"" if omitted else b"".join(chunks),
                    omitted,
                )
                try:
                    await tx.complete(response, retention=route.retention)
                except StoreUnavailable as exc:
                    logger.warning("idempotency: transactional commit failed; nothing was applied: %r", exc)
                    await answers.unavailable(send)  # the jittered 1-2 s (spec §2.11)
                    return
            else:
                try:
                    await tx.rollback()
                except StoreUnavailable as exc:  # a broken session: nothing was committed, the answer stands
                    logger.warning("idempotency: transactional rollback failed; nothing was committed: %r", exc)
    except StoreUnavailable:
        if handler_started:
            raise  # the handler's own exception (or its transaction's end): never "the store could not decide"
        await unavailable()
        return
    for message in messages:
        try:
            await send(message)
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            logger.debug("idempotency: client went away; the committed result will be replayed to its retry")
            return


def is_transaction_timeout(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from or during, is a PostgreSQL timeout: SQLSTATE 57014
    (``statement_timeout`` or a cancel), 55P03 (``lock_timeout``) or 25P03 (``idle_in_transaction_session_timeout``).

    Read from the ``sqlstate`` attribute (psycopg and asyncpg errors carry it), so a wrapper such as SQLAlchemy's
    ``DBAPIError`` counts through its ``__cause__``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) in _TIMEOUT_SQLSTATES:
            return True
        current = current.__cause__ or current.__context__
    return False
