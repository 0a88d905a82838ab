"""The pytest plugin (stalwart.pytest_plugin), run in a fresh pytest session with pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

_CONFTEST = 'pytest_plugins = ["stalwart.pytest_plugin"]\n'
_ARGS = ("-p", "no:cacheprovider", "-p", "no:asyncio")  # the inner tests are sync


def run(pytester: pytest.Pytester, test_code: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(_CONFTEST)
    pytester.makepyfile(test_code)
    return pytester.runpytest_inprocess(*_ARGS, "--strict-markers", *args)


def test_fake_clock_is_a_fresh_fake_clock(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        from stalwart.testing import FakeClock

        def test_one(fake_clock):
            assert isinstance(fake_clock, FakeClock)
            assert fake_clock.monotonic() == 0.0
            fake_clock.sleep(5.0)
            assert fake_clock.sleeps == [5.0]

        def test_two(fake_clock):
            assert fake_clock.monotonic() == 0.0 and fake_clock.sleeps == []
        """,
    )
    result.assert_outcomes(passed=2)


def test_stalwart_testing_makes_retries_instant_and_ends_with_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        import stalwart as sw
        from stalwart._retry_testing import current_mode
        from stalwart.testing import FakeClock

        def flaky(calls):
            def fn():
                calls.append(1)
                raise OSError("down")
            return fn

        def test_instant(stalwart_testing):
            clock = FakeClock()
            calls = []
            with pytest.raises(OSError):
                sw.Retry(on=OSError, max_attempts=4, clock=clock).call(flaky(calls))
            assert len(calls) == 4
            assert clock.sleeps == []  # no backoff sleep at all

        @pytest.mark.stalwart_testing(attempts=2)
        def test_capped(stalwart_testing):
            calls = []
            with pytest.raises(OSError):
                sw.Retry(on=OSError, max_attempts=4, clock=FakeClock()).call(flaky(calls))
            assert len(calls) == 2

        def test_off_without_the_fixture():
            assert current_mode() is None
        """,
    )
    result.assert_outcomes(passed=3)


def test_the_marker_is_registered_and_validated(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.stalwart_testing(attempts=0)
        def test_invalid(stalwart_testing):
            pass

        @pytest.mark.stalwart_testing(2)
        def test_positional(stalwart_testing):
            pass
        """,
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*attempts must be >= 1*", "*keyword arguments only*"])


def test_an_autouse_fixture_applies_it_to_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        _CONFTEST
        + """
import pytest

@pytest.fixture(autouse=True)
def _fast_retries(stalwart_testing):
    pass
"""
    )
    pytester.makepyfile(
        """
        from stalwart._retry_testing import current_mode

        def test_on():
            assert current_mode() is not None
        """
    )
    pytester.runpytest_inprocess(*_ARGS).assert_outcomes(passed=1)
