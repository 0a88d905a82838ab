"""Regression: with a ``FakeClock``, the idempotency middleware's periodic purge raced the fake time forward.

The purge runs from a background task started at lifespan start-up, sleeping on the middleware's clock between runs.
``FakeClock.asleep`` advances time at once (that is what makes retries instant in tests), so the task moved the clock
forward by ``purge_interval`` (60 s) at every turn of the event loop: in a user's test, leases and retention lapsed
while nothing happened. With a clock whose sleeps advance time, the middleware purges from requests instead (as
without a lifespan), on the same clock.
"""

from __future__ import annotations

from _idem_asgi import CountingApp, Lifespan, wrap

from stalwart.idempotency import Identity, MemoryStore
from stalwart.testing import FakeClock


async def test_lifespan_with_a_fake_clock_leaves_time_alone() -> None:
    clock = FakeClock()
    mw = wrap(CountingApp(), MemoryStore(clock=clock), resolver=lambda s: Identity("u"), clock=clock)
    lifespan = Lifespan(mw)
    await lifespan.start(turns=200)  # the application's life: many turns of the event loop
    assert lifespan.types[0] == "lifespan.startup.complete"
    assert clock.monotonic() == 0.0
    await lifespan.stop()
    assert lifespan.types[-1] == "lifespan.shutdown.complete"
    assert clock.monotonic() == 0.0
