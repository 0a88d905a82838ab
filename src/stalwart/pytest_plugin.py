"""A pytest plugin with stalwart's test fixtures; enable it in your ``conftest.py``::

    pytest_plugins = ["stalwart.pytest_plugin"]

Fixtures:

* ``fake_clock``: a fresh :class:`stalwart.testing.FakeClock` (time starts at ``0.0``; ``sleep``/``asleep`` advance
  it at once and record the delays in ``fake_clock.sleeps``). Pass it as ``clock=`` to the policies under test.
* ``stalwart_testing``: the test runs inside :func:`stalwart.testing.testing`: every ``Retry`` retries at once
  (no backoff sleeps, no server pushback) and a ``Hedge`` starts at most ``attempts`` attempts. Options come from the
  ``stalwart_testing`` marker, e.g. ``@pytest.mark.stalwart_testing(attempts=2)`` (the marker is registered by the
  plugin, so ``--strict-markers`` accepts it). To apply it to every test, add an autouse fixture::

      @pytest.fixture(autouse=True)
      def _fast_retries(stalwart_testing: None) -> None:
          pass

The plugin is not registered as an entry point: nothing changes in a test suite that does not ask for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import FakeClock
from .testing import testing as _testing

__all__ = ["fake_clock", "pytest_configure", "stalwart_testing"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``stalwart_testing`` marker."""
    config.addinivalue_line(
        "markers",
        "stalwart_testing(attempts=None, no_sleep=True): options of the stalwart_testing fixture "
        "(stalwart.testing.testing)",
    )


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fresh :class:`stalwart.testing.FakeClock` starting at ``0.0``."""
    return FakeClock()


@pytest.fixture
def stalwart_testing(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run the test in stalwart's retry testing mode (options from the ``stalwart_testing`` marker).

    Raises:
        TypeError, ValueError: the marker's options are invalid (as :func:`stalwart.testing.testing`).
    """
    marker = request.node.get_closest_marker("stalwart_testing")
    if marker is not None and marker.args:
        raise TypeError("the stalwart_testing marker takes keyword arguments only: attempts=..., no_sleep=...")
    options = {} if marker is None else dict(marker.kwargs)
    with _testing(**options):
        yield
