"""One execution of a handler under a claimed key: the tee, the finish, the heartbeat (spec §2.8 steps 8-9, §2.13).

The response is captured at the ASGI message level and forwarded as it arrives (streaming still works for the first
client), except the final body message: it is held until the outcome is persisted (``complete``) or the record
released, so a crash after persisting but before sending just leads to a replay. A stream still sending after
``max_capture_duration`` is completed at its next chunk, with its body omitted, and goes on to its client. Errors
sending to a client that went away stop the forwarding, never the capture. Every store write is a compare-and-set; a
failed compare means the lease was lost (counted, the real response still delivered). Cancellation (shutdown) marks
the record ABANDONED in a shielded step (in reclaim mode a handler that never started is released instead), then
propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from stalwart._clock import Clock
from stalwart._types import is_never_handled

from ._record import Outcome, State, StoredResponse, classify_outcome
from ._replay import ProblemFactory
from ._state import IdempotencyState
from ._store import IdempotencyStore

if TYPE_CHECKING:
    from ._routing import Route

__all__ = ["Execution", "heartbeat_loop", "is_disconnect", "is_retryable"]

logger = logging.getLogger("stalwart")

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Count = Callable[[str], None]


def is_disconnect(exc: Exception) -> bool:
    """True when ``exc``, raised by the server's ``send``, says the client went away."""
    # Servers report a vanished client as OSError (uvicorn's ClientDisconnected) or a "...Disconnect" exception.
    return isinstance(exc, OSError) or "disconnect" in type(exc).__name__.lower()


def is_retryable(exc: BaseException, retryable: tuple[type[BaseException], ...]) -> bool:
    """True when ``exc`` is one of the ``retryable`` types, or an exception group (a ``TaskGroup`` fan-out, nested
    groups included) whose leaves all are: the handler's work was not applied and the key can be released."""
    if not retryable:
        return False
    if isinstance(exc, retryable):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(retryable)
        return rest is None
    return False


class Execution:
    """State of one handler run: capture, forwarding and the store writes that finish the record."""

    __slots__ = (
        "_chunks",
        "_clock",
        "_count",
        "_give_back",
        "_problems",
        "_send",
        "_settled",
        "_size",
        "_started_at",
        "_store",
        "client_gone",
        "fence",
        "finished",
        "head",
        "headers",
        "heartbeat",
        "omitted",
        "owner",
        "record_id",
        "response_started",
        "route",
        "state",
        "status",
    )

    def __init__(
        self,
        *,
        route: Route,
        store: IdempotencyStore,
        record_id: str,
        owner: str,
        fence: int,
        state: IdempotencyState,
        send: Send,
        clock: Clock,
        problems: ProblemFactory,
        count: Count,
        give_back: Callable[[], None],
        head: bool = False,
    ) -> None:
        self.route = route
        self._store = store
        self.record_id = record_id
        self.owner = owner
        self.fence = fence
        self.state = state
        self._send = send
        self._clock = clock
        self._problems = problems
        self._count = count
        self._give_back = give_back
        self.head = head
        """The request is a HEAD: the response's own ``content-length`` is stored (nothing to recompute it from)."""
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self.omitted = False
        self.response_started = False
        self.finished = False
        self._settled = False
        self.heartbeat: asyncio.Task[None] | None = None
        """The lease heartbeat, stopped as soon as the outcome is settled (set by the middleware)."""
        self.client_gone = False
        self._started_at = 0.0  # set by http.response.start

    # -- ASGI plumbing --------------------------------------------------------------------------------------------

    async def _forward(self, message: Message) -> None:
        if self.client_gone:
            return
        try:
            await self._send(message)
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            self.client_gone = True
            logger.debug("idempotency: client went away; the handler keeps running and its result is stored")

    async def send(self, message: Message) -> None:
        """The ``send`` given to the app: capture, forward, and persist before the final body message."""
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self._started_at = self._clock.monotonic()  # max_capture_duration bounds the stream, not the handler
            self.headers = list(message.get("headers") or ())
            self.response_started = True
            route = self.route
            if route.mark_first_response:
                message = {**message, "headers": [*self.headers, (route.replay_header, b"false")]}
            if route.warn_streams:
                for name, value in self.headers:
                    if name.lower() == b"content-type" and value.lower().startswith(b"text/event-stream"):
                        logger.warning(
                            "idempotency is enabled on a route answering text/event-stream: a stream still running "
                            "after max_capture_duration (%gs) is stored with body_omitted (retries get its status "
                            "and headers only); disable idempotency for this route",
                            route.max_capture_duration,
                        )
            await self._forward(message)
            return
        if kind == "http.response.body" and not self.finished:
            self._capture(message.get("body", b""))
            if message.get("more_body", False):
                if self._capture_expired and not self._settled:
                    await self._settle_long_stream()
                await self._forward(message)
                return
            self.finished = True
            if not self._settled:
                await self._settle_response()
            await self._forward(message)
            return
        await self._forward(message)

    def _capture(self, chunk: bytes) -> None:
        if self.omitted or not chunk:
            return
        self._size += len(chunk)
        if self._size > self.route.max_stored_body or self._capture_expired:
            self.omitted = True
            self._chunks.clear()
            return
        self._chunks.append(bytes(chunk))

    @property
    def _capture_expired(self) -> bool:
        # max_capture_duration bounds the stream, counted from http.response.start (not the handler's start).
        return self._clock.monotonic() - self._started_at > self.route.max_capture_duration

    # -- outcomes -------------------------------------------------------------------------------------------------

    def _started(self) -> bool:
        return self.state.started if self.route.marker else True

    def _decide(self, *, exception: bool, retryable: bool = False) -> str:
        route = self.route
        return classify_outcome(
            self.status,
            started=self._started(),
            exception=exception,
            release_requested=self.state.release_requested or retryable,
            release_statuses=route.release_statuses,
            store_5xx=route.store_5xx,
            release_on_exception=route.release_on_exception,
        )

    def _stop_heartbeat(self) -> None:
        # The outcome is being settled: nothing to renew any more. Work the app does after its response (Starlette's
        # background tasks) must not keep a lease alive, nor renew a record that is completed or released.
        if self.heartbeat is not None:
            self.heartbeat.cancel()

    async def _settle_response(self) -> None:
        assert self.status is not None
        self._stop_heartbeat()
        if self._decide(exception=False) == "store":
            body = b"" if self.omitted else b"".join(self._chunks)
            headers = self.route.header_filter.filter(self.headers, head=self.head)
            await self._complete(StoredResponse(Outcome.RESPONSE, self.status, headers, body, self.omitted))
        else:
            await self._release()
        self._settled = True

    async def _settle_long_stream(self) -> None:
        """The stream outlasted ``max_capture_duration`` (spec §2.10, §2.13): store it as omitted now.

        Status and headers are known, so a result to store is completed at once with ``body_omitted``: retries get
        that replay (``Idempotency-Body-Omitted: true``) instead of 409 for as long as the stream runs, and the
        heartbeat stops. The first client's stream goes on untouched; nothing the handler does afterwards (its end,
        an exception, a cancellation) changes the record. A stream to release (a release status, or the endpoint
        never started) is left to its end, as before: releasing it early would let a retry run alongside it.
        """
        assert self.status is not None
        if self._decide(exception=False) != "store":
            return
        self.omitted = True
        self._chunks.clear()
        self._stop_heartbeat()
        headers = self.route.header_filter.filter(self.headers, head=self.head)
        await self._complete(StoredResponse(Outcome.RESPONSE, self.status, headers, b"", body_omitted=True))
        self._settled = True

    async def on_return(self) -> None:
        """The app returned normally; finish a response it left incomplete (or never started)."""
        if self.finished:
            return
        await self.on_exception(RuntimeError("the application returned without completing its response"))

    async def on_exception(self, exc: BaseException) -> None:
        """Finish the record after the app raised ``exc`` (the caller re-raises it)."""
        if not self._settled:
            self._stop_heartbeat()
        if is_never_handled(exc):
            if not self._settled:
                await self._shielded_abandon()
            return
        if self._settled:
            return
        self.finished = True
        if self._decide(exception=True, retryable=is_retryable(exc, self.route.retryable_exceptions)) == "release":
            await self._release()
        elif not self.response_started:
            status, headers, body = self._problems.build(
                500, "idempotency-handler-error", "The request handler failed", "The handler raised an exception."
            )
            self.status = status
            await self._complete(StoredResponse(Outcome.EXCEPTION, status, tuple(headers[:2]), body))
            await self._forward({"type": "http.response.start", "status": status, "headers": headers})
            await self._forward({"type": "http.response.body", "body": body, "more_body": False})
        else:
            assert self.status is not None
            kept = self.route.header_filter.filter(self.headers, head=self.head)
            await self._complete(StoredResponse(Outcome.EXCEPTION, self.status, kept, b"", body_omitted=True))
        self._settled = True

    # -- store writes ---------------------------------------------------------------------------------------------

    async def _complete(self, response: StoredResponse) -> None:
        stored, retried = await self._write_with_retries(
            "storing the result",
            lambda: self._store.complete(
                self.record_id,
                owner_token=self.owner,
                fence=self.fence,
                response=response,
                retention=self.route.retention,
            ),
        )
        if stored is None:
            self._count("completion_write_failures")
            logger.error(
                "idempotency: could not store the result; the real response is delivered and the record will lapse "
                "into ABANDONED when its lease expires"
            )
        elif not stored and not (retried and await self._completed_by_us()):
            # (After a failed attempt a refused compare may only mean that attempt landed: its answer was lost.)
            self._count("lease_lost")
            logger.warning(
                "idempotency: lease lost before completion (fence %d); the result is delivered, not stored",
                self.fence,
            )

    async def _release(self) -> None:
        released, _ = await self._write_with_retries(
            "releasing the record",
            lambda: self._store.release(self.record_id, owner_token=self.owner, fence=self.fence),
        )
        if released is None:
            # Nothing was processed: a record left in progress would lapse into ABANDONED and answer "outcome
            # unknown" for the whole retention. The give-back keeps trying in the background (twice the lease).
            logger.warning("idempotency: releasing the record failed; it is given back in the background")
            self._give_back()

    async def _write_with_retries(self, what: str, write: Callable[[], Awaitable[bool]]) -> tuple[bool | None, bool]:
        """Run a compare-and-set write within the completion budget (spec §2.8 step 9).

        Returns:
            The store's answer (None when it never answered) and whether an attempt failed before it (an attempt
            that failed may still have been applied).
        """
        route = self.route
        deadline = self._clock.monotonic() + route.completion_budget
        delay = 0.05
        failed = False
        for attempt in range(1, route.completion_attempts + 1):
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(min(remaining, route.store_timeout)):
                    return await write(), failed
            except Exception as exc:
                failed = True
                logger.warning("idempotency: %s failed (attempt %d): %r", what, attempt, exc)
                if attempt < route.completion_attempts:
                    await self._clock.asleep(min(delay, max(0.0, deadline - self._clock.monotonic())))
                    delay *= 2
        return None, failed

    async def _completed_by_us(self) -> bool:
        try:
            async with asyncio.timeout(self.route.store_timeout):
                record = await self._store.get(self.record_id)
        except Exception:
            return False
        return (
            record is not None
            and record.state is State.COMPLETED
            and record.owner_token == self.owner
            and record.fence == self.fence
        )

    async def _abandon(self) -> bool:
        abandoned = await self._store.abandon(self.record_id, owner_token=self.owner, fence=self.fence)
        if abandoned:
            self._count("abandoned")  # T5: this execution's record is now ABANDONED (outcome unknown)
        return abandoned

    async def _shielded_abandon(self) -> None:
        # Shutdown or cancellation: a short, shielded CAS; a second cancellation does not stop it.
        route = self.route
        if route.reclaim and not self.state.started and route.marker:
            op = self._store.release(self.record_id, owner_token=self.owner, fence=self.fence)
        else:
            op = self._abandon()
        task = asyncio.ensure_future(asyncio.wait_for(op, timeout=min(route.store_timeout, 1.0)))
        try:
            await asyncio.shield(task)
        except BaseException as exc:
            if not task.done():
                task.add_done_callback(_log_task_failure)
            elif not isinstance(exc, asyncio.CancelledError):
                logger.warning("idempotency: marking the record abandoned failed: %r", exc)


def _log_task_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("idempotency: background store write failed: %r", task.exception())


async def heartbeat_loop(
    store: IdempotencyStore, route: Route, *, record_id: str, owner: str, fence: int, clock: Clock
) -> None:
    """Renew the lease every ``heartbeat_every`` until cancelled or the compare fails (lease lost)."""
    while True:
        await clock.asleep(route.heartbeat_every)
        try:
            async with asyncio.timeout(route.store_timeout):
                ok = await store.heartbeat(
                    record_id, owner_token=owner, fence=fence, lease_ttl=route.lease_ttl, retention=route.retention
                )
        except Exception as exc:
            logger.warning("idempotency: heartbeat failed; the handler keeps running: %r", exc)
            continue
        if not ok:
            logger.warning("idempotency: heartbeat refused (lease lost, fence %d); completion will tell", fence)
            return
