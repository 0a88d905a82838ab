"""``@testing(...)`` keeps the mode on for the whole of what it decorates, whatever that is.

The decorator handled a sync function and an ``async def``; anything else was treated as a sync function, the
fault ``contextlib.ContextDecorator`` has (CPython gh-125862) and that silently skipped whole test classes in other
projects (Airflow #55915, Sentry #124947, freezegun #16):

* a **class** was replaced by a plain function: pytest collects no test from it, the suite "passes";
* a **generator function** (a pytest ``yield`` fixture) and an **async generator function** (an async fixture) got
  the mode only while the generator object was *created*: it was off again before the body ran.

A class now has each of its ``test*`` methods decorated and is returned itself (as ``unittest.mock.patch`` does);
a generator keeps the mode on from its first step to its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from stalwart._retry_testing import RetryTestingMode, current_mode
from stalwart.testing import testing

pytest_plugins = ["pytester"]

ON = RetryTestingMode(attempts=2, no_sleep=True)


def test_a_decorated_class_stays_a_class_and_its_tests_are_collected_and_run_in_the_mode(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from stalwart._retry_testing import current_mode
        from stalwart.testing import testing

        @testing(attempts=2)
        class TestSuite:
            def test_method(self):
                assert current_mode().attempts == 2

            @staticmethod
            def test_static():
                assert current_mode().attempts == 2

            @classmethod
            def test_class(cls):
                assert current_mode().attempts == 2

            def helper(self):
                return current_mode()

            def test_helper_called_from_a_test(self):
                assert self.helper() is not None

        def test_after_the_class():
            assert current_mode() is None
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=5)


def test_a_decorated_class_is_returned_itself_with_only_its_test_methods_wrapped() -> None:
    class Base:
        def test_inherited(self) -> RetryTestingMode | None:
            return current_mode()

    class Suite(Base):
        value = "test-not-callable"

        def test_own(self) -> RetryTestingMode | None:
            return current_mode()

        def helper(self) -> RetryTestingMode | None:
            return current_mode()

    decorated = testing(attempts=2)(Suite)
    assert decorated is Suite
    assert Suite().test_own() == ON
    assert Suite().test_inherited() == ON
    assert Suite().helper() is None
    assert Suite.value == "test-not-callable"
    assert Base().test_inherited() is None  # the base class is left alone
    assert current_mode() is None


def test_a_generator_function_runs_its_whole_body_in_the_mode() -> None:
    seen: list[RetryTestingMode | None] = []

    @testing(attempts=2)
    def fixture() -> Iterator[int]:
        seen.append(current_mode())
        sent = yield 1
        seen.append(current_mode())
        yield sent

    generator = fixture()
    assert current_mode() is None  # nothing runs before the first step
    assert next(generator) == 1
    assert generator.send(7) == 7
    with pytest.raises(StopIteration):
        next(generator)
    assert seen == [ON, ON]
    assert current_mode() is None


def test_a_generator_closed_early_leaves_the_mode() -> None:
    @testing(attempts=2)
    def fixture() -> Iterator[None]:
        yield
        yield

    generator = fixture()
    next(generator)
    assert current_mode() == ON  # between yields, as `with testing(): yield` in a fixture
    generator.close()
    assert current_mode() is None


async def test_an_async_generator_function_runs_its_whole_body_in_the_mode() -> None:
    seen: list[RetryTestingMode | None] = []

    @testing(attempts=2)
    async def fixture() -> AsyncIterator[int]:
        seen.append(current_mode())
        sent = yield 1
        seen.append(current_mode())
        try:
            yield sent
        except KeyError:
            seen.append(current_mode())
            yield 3

    generator = fixture()
    assert current_mode() is None
    assert await generator.asend(None) == 1
    assert await generator.asend(7) == 7
    assert await generator.athrow(KeyError()) == 3
    with pytest.raises(StopAsyncIteration):
        await generator.asend(None)
    assert seen == [ON, ON, ON]
    assert current_mode() is None


async def test_an_async_generator_closed_early_leaves_the_mode() -> None:
    @testing(attempts=2)
    async def fixture() -> AsyncIterator[None]:
        yield
        yield

    generator = fixture()
    await generator.asend(None)
    assert current_mode() == ON
    await generator.aclose()
    assert current_mode() is None
