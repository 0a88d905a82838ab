"""A process's view of a circuit breaker shared by a fleet through a store, pure: no clock, no lock, no I/O.

:class:`SharedMachine` is a :class:`~stalwart._breaker_state.BreakerMachine` (the process's local breaker, with the
same lock-free fast paths) that a store keeps in step with the fleet's breaker. A store's background thread calls,
under the breaker's lock, :meth:`SharedMachine.take` (what to send: the outcomes batched since the last sync, probe
outcomes, probe demand, a proposed transition) and then, with the fleet's answer, :meth:`SharedMachine.apply`; when
the store cannot be reached it calls :meth:`SharedMachine.fail` instead.

While connected (the last sync answered):

* CLOSED/METRICS_ONLY: calls pass on the local permit as usual and outcomes are recorded locally *and* batched; the
  fleet judges the batches of every process at each sync. A local trip (the process's own window or consecutive
  count reaches a threshold) opens this process at once and is *proposed* to the fleet (applied only if the fleet is
  still in the epoch the process knew), so that when one replica sees an outage the others stop calling too.
* OPEN: rejected until the open period the fleet set has passed; then a caller asks the fleet for a probe permit
  (its call is rejected; the thread is woken) — the fleet moves to HALF_OPEN and hands out at most
  ``half_open_max_calls`` permits in total, across processes. A permit not used within about one sync is given back.
* HALF_OPEN: a probe runs on a fleet permit; its outcome is sent to the fleet at once, which judges the probes of
  all processes together (the local machine does not judge them).
* Manual transitions (``transition_to``, ``reset``, ``force_open``, ``disable``) are applied to the fleet as they
  are.

When the store cannot be reached the machine is an ordinary local breaker from its current state; a local trip is
kept as a proposal for when the store answers again, and otherwise the fleet's state is adopted then.

A store may lose the fleet's state (a restart without persistence, a failover to a replica that missed the latest
writes, an evicted or deleted key). So every sync of a process whose breaker is OPEN, HALF_OPEN or FORCED_OPEN also
carries a :class:`Claim` (its state and the rest of its open period on its own clock; HALF_OPEN is claimed as OPEN
with nothing left), which the store restores when its state was rebuilt from nothing or is older than the epoch the
process knew, instead of every process adopting "no state" as CLOSED and calling the failing dependency at once.
Claims meet deterministically: FORCED_OPEN over OPEN over anything else, and among OPEN the latest end wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ._breaker_settings import BreakerSettings, CircuitState, Permit
from ._breaker_state import BreakerMachine
from ._windows import FAILED, OK, SLOW, CountAggregator, CountWindow, TimeAggregator

__all__ = ["Claim", "FleetView", "Proposal", "SharedMachine", "SyncRequest"]

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_METRICS_ONLY = CircuitState.METRICS_ONLY
_FORCED_OPEN = CircuitState.FORCED_OPEN


def _no_wake() -> None:
    return None


def _no_random() -> float:
    return 0.5


class Proposal(NamedTuple):
    """A transition this process made and asks the fleet to make.

    Attributes:
        state: the state entered.
        reason: the transition's reason (``"manual"`` for manual control).
        rate: the rate that tripped, or ``None``.
        open_duration: for OPEN, the open period in seconds.
        expected_epoch: apply only if the fleet is still in this epoch (``None``: apply unconditionally, for a
            manual transition; ``-1`` when no fleet epoch was known yet: apply only to a fleet breaker with no state).
    """

    state: CircuitState
    reason: str
    rate: float | None
    open_duration: float
    expected_epoch: int | None


class Claim(NamedTuple):
    """This process's OPEN (or HALF_OPEN, or FORCED_OPEN), for the store to restore should it have lost the fleet's.

    Sent with every sync of a breaker in one of those states. The store restores it only when its own state of the
    breaker was rebuilt from nothing since this process last heard from it (no state: a restart without
    persistence, an eviction; or a CLOSED state created meanwhile by a process with nothing to claim) or is older
    than the epoch this process knew (a replica that missed the latest writes): never over a transition the fleet
    made. Several claims give the most restrictive state, whatever their order: FORCED_OPEN over OPEN over any
    other state, and among OPEN the latest end of the open period.

    Attributes:
        state: OPEN (also for a process in HALF_OPEN, its open period over) or FORCED_OPEN.
        reason: the reason of the transition that opened the breaker.
        rate: its rate, or ``None``.
        open_remaining: seconds left of the open period on this process's clock (``0.0`` from HALF_OPEN and
            FORCED_OPEN; never negative).
        openings: consecutive openings since the last clean close.
        last_open_duration: the last open period, seconds.
    """

    state: CircuitState
    reason: str
    rate: float | None
    open_remaining: float
    openings: int
    last_open_duration: float


class SyncRequest(NamedTuple):
    """What one sync sends to the fleet for one breaker (see :meth:`SharedMachine.take`).

    Attributes:
        epoch: the fleet epoch the outcomes below belong to (``-1``: none known yet).
        ok: successful calls in CLOSED/METRICS_ONLY since the last sync.
        failed: failed calls among them.
        slow: slow calls among them (rate models).
        trailing: consecutive model: the failures at the end of the batch (after its last success).
        codes: count window: the batch's outcomes in order, one byte each (``OK``/``FAILED``/``SLOW`` flags),
            at most the window's size (older ones would be evicted by the newer ones anyway); else ``b""``.
        probe_ok: probes that succeeded.
        probe_failed: probes that failed.
        probe_slow: slow probes.
        returned: probe permits given back (calls ended without an outcome, or permits left unused).
        demand: callers that asked for a probe permit and had none.
        proposal: a transition to apply, or ``None``.
        next_open: seconds of the open period should the fleet open the breaker in this sync.
        claim: this process's OPEN, HALF_OPEN or FORCED_OPEN for the store to restore should it have lost it (see
            :class:`Claim`), or ``None`` in any other state.
    """

    epoch: int
    ok: int
    failed: int
    slow: int
    trailing: int
    codes: bytes
    probe_ok: int
    probe_failed: int
    probe_slow: int
    returned: int
    demand: int
    proposal: Proposal | None
    next_open: float
    claim: Claim | None


class FleetView(NamedTuple):
    """The fleet's breaker after a sync.

    Attributes:
        state: its state.
        epoch: its epoch (changes with every transition of the fleet's breaker).
        reason: the reason of its last transition.
        rate: the rate of its last transition, or ``None``.
        open_remaining: seconds left in the open period (0.0 outside OPEN), on the store's clock.
        openings: consecutive openings since the last clean close.
        last_open_duration: the last open period, seconds.
        granted: probe permits granted to this process by this sync.
        applied: whether this sync applied the request's proposal, or restored (or merged) its claim.
        calls: the fleet's calls in the window (rate models), or since the last transition (consecutive model); in
            HALF_OPEN, probe outcomes.
        failures: failures among ``calls``.
        slow: slow calls among ``calls``.
        consecutive: the fleet's current run of failures (consecutive model).
        probes: probe permits out in the current HALF_OPEN period, across the fleet.
    """

    state: CircuitState
    epoch: int
    reason: str
    rate: float | None
    open_remaining: float
    openings: int
    last_open_duration: float
    granted: int
    applied: bool
    calls: int
    failures: int
    slow: int
    consecutive: int
    probes: int


class _RecordingCount(CountAggregator):
    """A count window that also appends every outcome to the batch for the fleet."""

    __slots__ = ("batch", "limit", "wake")

    def __init__(self, size: int, batch: bytearray, limit: int) -> None:
        super().__init__(size)
        self.batch = batch
        self.limit = limit
        self.wake: Callable[[], None] = _no_wake

    def record(self, now: float, outcome: int) -> bool:
        batch = self.batch
        batch.append(outcome)
        if len(batch) == self.limit:
            self.wake()
        return CountAggregator.record(self, now, outcome)

    def add_success(self, now: float) -> bool:
        batch = self.batch
        batch.append(OK)
        if len(batch) == self.limit:
            self.wake()
        return CountAggregator.add_success(self, now)


class _RecordingTime(TimeAggregator):
    """A time window that also appends every outcome to the batch for the fleet."""

    __slots__ = ("batch", "limit", "wake")

    def __init__(self, seconds: int, batch: bytearray, limit: int) -> None:
        super().__init__(seconds)
        self.batch = batch
        self.limit = limit
        self.wake: Callable[[], None] = _no_wake

    def record(self, now: float, outcome: int) -> bool:
        batch = self.batch
        batch.append(outcome)
        if len(batch) == self.limit:
            self.wake()
        return TimeAggregator.record(self, now, outcome)

    def add_success(self, now: float) -> bool:
        batch = self.batch
        batch.append(OK)
        if len(batch) == self.limit:
            self.wake()
        return TimeAggregator.add_success(self, now)


class SharedMachine(BreakerMachine):
    """A breaker machine kept in step with the fleet's breaker (pure; the caller holds the breaker's lock).

    Args:
        settings: the validated settings (every process of the fleet should use the same).
        now: the current time (seconds on the caller's monotonic clock).
        random: as for :class:`BreakerMachine`.
        flush_size: outcomes (rate models) or failures (consecutive model) after which the batch is sent at once.

    Attributes:
        connected: whether the last sync reached the store (``False`` until the first one does).
        fleet_epoch: the fleet epoch this process's state mirrors (``-1`` before the first sync).
        wake: ``() -> None``, called (under the lock; it must not block) when something should be sent now: a
            proposal, a probe outcome, probe demand, or a full batch. The store sets it.
        tokens: fleet probe permits held and not yet used (HALF_OPEN).
        view: the last :class:`FleetView`, or ``None``.
    """

    __slots__ = (
        "_applying",
        "_base_calls",
        "_base_epoch",
        "_base_failed",
        "_flush_size",
        "_idle",
        "_open_rate",
        "_open_reason",
        "batch",
        "connected",
        "demand",
        "fleet_epoch",
        "probe_failed",
        "probe_ok",
        "probe_slow",
        "proposal",
        "returned",
        "tokens",
        "view",
        "wake",
    )

    def __init__(
        self,
        settings: BreakerSettings,
        *,
        now: float,
        random: Callable[[], float] = _no_random,
        flush_size: int = 1000,
    ) -> None:
        super().__init__(settings, now=now, random=random)
        self.batch = bytearray()
        self._flush_size = flush_size
        window = settings.window
        if window is not None:
            if isinstance(window, CountWindow):
                self.window = _RecordingCount(window.size, self.batch, flush_size)
            else:
                self.window = _RecordingTime(int(window.seconds), self.batch, flush_size)
            self.window.judge_from = settings.judging_calls
        self.wake: Callable[[], None] = _no_wake
        self.connected = False
        self.fleet_epoch = -1
        self.proposal: Proposal | None = None
        self.view: FleetView | None = None
        self._applying = False
        self._base_epoch = self.epoch
        self._base_calls = self._base_failed = 0
        self.tokens = self.demand = self._idle = 0
        self.probe_ok = self.probe_failed = self.probe_slow = self.returned = 0
        self._open_reason = "manual"  # the last transition to OPEN, for a claim
        self._open_rate: float | None = None

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Install the store's wake-up callback."""
        self.wake = wake
        window = self.window
        if isinstance(window, _RecordingCount | _RecordingTime):
            window.wake = wake

    # --- local transitions become proposals ------------------------------------------------------------------------

    def _move(self, to: CircuitState, now: float, reason: str, rate: float | None = None) -> None:
        super()._move(to, now, reason, rate)
        if to is _OPEN:
            self._open_reason, self._open_rate = reason, rate
        del self.batch[:]  # outcomes of the epoch left
        self.tokens = self.demand = 0
        self.probe_ok = self.probe_failed = self.probe_slow = self.returned = 0
        if self._applying:
            return
        duration = self.last_open_duration if to is _OPEN else 0.0
        proposal = self.proposal
        if reason == "manual":
            self.proposal = Proposal(to, reason, rate, duration, None)
        elif to is _OPEN:
            if proposal is None or proposal.expected_epoch is not None:
                self.proposal = Proposal(to, reason, rate, duration, self.fleet_epoch)
        elif proposal is not None and proposal.expected_epoch is not None:
            self.proposal = None  # (disconnected) the local breaker recovered: nothing to tell the fleet
        self.wake()

    # --- permits and outcomes ----------------------------------------------------------------------------------------

    def acquire(self, now: float) -> Permit | None:
        """As :meth:`BreakerMachine.acquire`; while connected, OPEN and HALF_OPEN admit only on a fleet permit."""
        if self.connected:
            state = self.state
            if state is _OPEN:
                if now < self.open_until:
                    return None
                self._want_probe()
                return None
            if state is _HALF_OPEN:
                if self.tokens > 0:
                    self.tokens -= 1
                    self.probes += 1
                    self._idle = 0
                    return self.epoch
                self._want_probe()
                return None
        return super().acquire(now)

    def _want_probe(self) -> None:
        self.demand += 1
        if self.demand == 1:
            self.wake()

    def retry_after(self, now: float) -> float | None:
        """As :meth:`BreakerMachine.retry_after`; ``None`` once the open period has passed while the fleet's probe
        permits are awaited."""
        if self.connected and self.state is _OPEN and now >= self.open_until:
            return None
        return super().retry_after(now)

    def success(self, permit: Permit, now: float, duration: float = 0.0) -> None:
        """As :meth:`BreakerMachine.success`; while connected, a probe's outcome goes to the fleet."""
        if self.connected and self.state is _HALF_OPEN and permit == self.epoch:
            self._probe(duration, failed=False)
        else:
            super().success(permit, now, duration)

    def failure(self, permit: Permit, now: float, duration: float = 0.0) -> None:
        """As :meth:`BreakerMachine.failure`; while connected, a probe's outcome goes to the fleet."""
        if self.connected and self.state is _HALF_OPEN and permit == self.epoch:
            self._probe(duration, failed=True)
        else:
            super().failure(permit, now, duration)

    def _probe(self, duration: float, *, failed: bool) -> None:
        slow_after = self.settings.slow_call_duration
        self.calls += 1
        if failed:
            self.failed += 1
            self.probe_failed += 1
        else:
            self.probe_ok += 1
        if slow_after is not None and duration >= slow_after:
            self.slow += 1
            self.probe_slow += 1
        self.wake()

    def release(self, permit: Permit) -> None:
        """As :meth:`BreakerMachine.release`; while connected, a probe's permit goes back to the fleet."""
        if self.connected and permit == self.epoch and self.state is _HALF_OPEN and self.probes > 0:
            self.probes -= 1
            self.returned += 1
            self.wake()
        else:
            super().release(permit)

    # --- statistics --------------------------------------------------------------------------------------------------

    def counts(self, now: float) -> tuple[int, int, int]:
        """The fleet's counts as of the last sync while connected, else the local ones."""
        view = self.view
        if not self.connected or view is None:
            return super().counts(now)
        return view.calls, view.failures, view.slow

    def rates(self, now: float) -> tuple[float | None, float | None]:
        """The fleet's rates as of the last sync while connected, else the local ones."""
        if not self.connected or self.view is None:
            return super().rates(now)
        if self.window is None or self.state is CircuitState.DISABLED:
            return None, None
        calls, failures, slow = self.counts(now)
        needed = 1 if self.state is _HALF_OPEN else self.settings.judging_calls
        if calls < needed or calls == 0:
            return None, None
        slow_rate = None if self.settings.slow_call_duration is None else 100.0 * slow / calls
        return 100.0 * failures / calls, slow_rate

    # --- syncing -----------------------------------------------------------------------------------------------------

    def take(self, now: float) -> SyncRequest:
        """What to send now; clears it (restore it with :meth:`fail` if the sync fails).

        Args:
            now: the current time (seconds on the breaker's clock), for the rest of the open period in the claim.
        """
        if self.epoch != self._base_epoch:
            self._base_epoch = self.epoch
            self._base_calls = self._base_failed = 0
        ok = failed = slow = trailing = 0
        codes = b""
        state = self.state
        counting = state is _CLOSED or state is _METRICS_ONLY
        window = self.window
        if window is None:
            calls, failures = self.calls, self.failed
            if counting:
                failed = failures - self._base_failed
                ok = max(0, calls - self._base_calls - failed)
                trailing = min(self.failures, failed)
            self._base_calls, self._base_failed = calls, failures
        else:
            batch = bytes(self.batch)
            del self.batch[:]
            if counting and batch:
                failed = batch.count(FAILED) + batch.count(FAILED | SLOW)
                slow = batch.count(SLOW) + batch.count(FAILED | SLOW)
                ok = len(batch) - failed
                if isinstance(window, CountAggregator):
                    codes = batch[-window.size :]
        returned = self.returned
        if self.tokens:
            self._idle += 1
            if self._idle >= 2:  # unused for a whole sync interval: let another process probe
                returned += self.tokens
                self.tokens = 0
        request = SyncRequest(
            epoch=self.fleet_epoch,
            ok=ok,
            failed=failed,
            slow=slow,
            trailing=trailing,
            codes=codes,
            probe_ok=self.probe_ok,
            probe_failed=self.probe_failed,
            probe_slow=self.probe_slow,
            returned=returned,
            demand=min(self.demand, self.settings.half_open_max_calls),
            proposal=self.proposal,
            next_open=self._open_duration(),
            claim=self._claim(state, now),
        )
        self.probe_ok = self.probe_failed = self.probe_slow = self.returned = self.demand = 0
        self.proposal = None
        return request

    def _claim(self, state: CircuitState, now: float) -> Claim | None:
        if state is _OPEN or state is _HALF_OPEN:
            remaining = self.open_until - now if state is _OPEN else 0.0
            return Claim(
                _OPEN,
                self._open_reason,
                self._open_rate,
                remaining if remaining > 0.0 else 0.0,
                self.openings,
                self.last_open_duration,
            )
        if state is _FORCED_OPEN:
            return Claim(_FORCED_OPEN, "manual", None, 0.0, self.openings, self.last_open_duration)
        return None

    def fail(self, request: SyncRequest) -> None:
        """The sync carrying ``request`` failed: decide locally from now on; keep the proposal for later."""
        self.connected = False
        self.tokens = 0
        if self.proposal is None and request.proposal is not None:
            self.proposal = request.proposal

    def disconnect(self) -> None:
        """No more syncs (the store was closed): decide locally from now on."""
        self.connected = False
        self.tokens = 0
        self.wake = _no_wake
        window = self.window
        if isinstance(window, _RecordingCount | _RecordingTime):
            window.wake = self.batch.clear  # nobody takes the batch any more: keep it bounded by flush_size

    def apply(self, view: FleetView, now: float) -> None:
        """Adopt the fleet's state after a sync (transitions are queued in ``changes`` as usual)."""
        was_connected = self.connected
        self.connected = True
        known = self.fleet_epoch
        self.view = view
        pending = self.proposal
        if pending is not None and (pending.expected_epoch is None or pending.expected_epoch == view.epoch):
            # A transition made here since this sync was taken and not sent yet: keep it (the next sync sends it)
            # rather than flap back to the fleet's state meanwhile.
            self.fleet_epoch = view.epoch
            if view.state is _HALF_OPEN:
                self.returned += view.granted  # not ours to use now: give them back with the next sync
            return
        self._applying = True
        try:
            if view.epoch != known or not was_connected or self.state is not view.state:
                own = view.applied and self.state is view.state and was_connected
                if not own and (view.epoch != known or self.state is not view.state):
                    self._move(view.state, now, view.reason, view.rate)
            self.fleet_epoch = view.epoch
            self.openings = view.openings
            self.last_open_duration = view.last_open_duration
            if self.state is _OPEN:
                remaining = view.open_remaining if view.open_remaining > 0.0 else 0.0
                self.open_until = now + remaining
                self.reject_until = self.open_until
            elif self.state is _HALF_OPEN and view.granted:
                self.tokens += view.granted
                self._idle = 0
        finally:
            self._applying = False
