"""Fallback: value or handler, sync and async, what it answers for and what it never swallows."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import stalwart as sw


async def fail_with(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


def raise_(exc: BaseException) -> None:
    raise exc


# -- construction -----------------------------------------------------------------------------------------------


def test_exactly_one_of_value_and_handler() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        sw.Fallback()
    with pytest.raises(ValueError, match="exactly one"):
        sw.Fallback(value=1, handler=lambda exc: 2)


def test_invalid_handler_and_on_are_type_errors() -> None:
    with pytest.raises(TypeError, match="handler"):
        sw.Fallback(handler=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on"):
        sw.Fallback(value=1, on="ValueError")  # type: ignore[arg-type]


def test_repr() -> None:
    assert repr(sw.Fallback(value=None)) == "Fallback(value=None)"
    assert repr(sw.Fallback(handler=str)).startswith("Fallback(handler=")


# -- values -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, False, "", {}, [], "cached"])
async def test_value_is_returned_even_when_falsy(value: object) -> None:
    fallback = sw.Fallback(value=value)
    assert await fallback.run(fail_with, ValueError("x")) is value
    assert fallback.call(raise_, ValueError("x")) is value


async def test_success_passes_through() -> None:
    fallback = sw.Fallback(value="fallback")

    async def ok(a: int, *, b: int) -> int:
        return a + b

    assert await fallback.run(ok, 1, b=2) == 3
    assert fallback.call(lambda a: a * 2, 5) == 10


# -- handlers ---------------------------------------------------------------------------------------------------


async def test_sync_handler_receives_the_exception() -> None:
    seen: list[BaseException] = []

    def handler(exc: BaseException) -> str:
        seen.append(exc)
        return f"handled {type(exc).__name__}"

    fallback = sw.Fallback(handler=handler)
    error = KeyError("k")
    assert await fallback.run(fail_with, error) == "handled KeyError"
    assert fallback.call(raise_, error) == "handled KeyError"
    assert seen == [error, error]


async def test_async_handler_is_awaited_for_async_calls() -> None:
    async def handler(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return f"async {exc}"

    fallback = sw.Fallback(handler=handler)
    assert await fallback.run(fail_with, ValueError("boom")) == "async boom"


def test_async_handler_cannot_answer_a_sync_call() -> None:
    async def handler(exc: BaseException) -> str:
        return "never"

    fallback = sw.Fallback(handler=handler)
    called: list[int] = []
    with pytest.raises(TypeError, match="async fallback handler"):
        fallback.call(called.append, 1)
    assert called == []  # refused before the call is made
    with pytest.raises(TypeError, match="async fallback handler"):
        fallback(lambda: None)


async def test_handler_errors_propagate_chained_to_the_original() -> None:
    def handler(exc: BaseException) -> str:
        raise RuntimeError("handler failed")

    fallback = sw.Fallback(handler=handler)
    with pytest.raises(RuntimeError, match="handler failed") as info:
        await fallback.run(fail_with, ValueError("original"))
    assert isinstance(info.value.__context__, ValueError)


# -- what it answers for ----------------------------------------------------------------------------------------


async def test_on_filters_exceptions() -> None:
    fallback = sw.Fallback(value="fb", on=(KeyError, IndexError))
    assert await fallback.run(fail_with, IndexError()) == "fb"
    with pytest.raises(ValueError, match="other"):
        await fallback.run(fail_with, ValueError("other"))
    with pytest.raises(ValueError, match="other"):
        fallback.call(raise_, ValueError("other"))


async def test_on_accepts_a_predicate() -> None:
    fallback = sw.Fallback(value="fb", on=lambda exc: "transient" in str(exc))
    assert await fallback.run(fail_with, OSError("transient glitch")) == "fb"
    with pytest.raises(OSError, match="permanent"):
        await fallback.run(fail_with, OSError("permanent"))


@pytest.mark.parametrize(
    "error",
    [sw.CircuitOpenError("payments", 3.0), sw.BulkheadFullError("payments", 10, 100), sw.DeadlineExceeded()],
)
async def test_rejections_and_timeouts_are_answered(error: BaseException) -> None:
    fallback = sw.Fallback(value="degraded")
    assert await fallback.run(fail_with, error) == "degraded"
    assert fallback.call(raise_, error) == "degraded"


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), GeneratorExit(), asyncio.CancelledError()])
def test_never_swallows_cancellation_or_exit_even_with_on_base_exception(error: BaseException) -> None:
    fallback = sw.Fallback(value="no", on=BaseException)
    with pytest.raises(type(error)):
        fallback.call(raise_, error)


async def test_a_cancelled_call_stays_cancelled() -> None:
    fallback = sw.Fallback(value="no", on=BaseException)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(fallback.run(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_answers_for_a_timeout_inside() -> None:
    pipeline = sw.Pipeline(sw.Fallback(value="late"), sw.Timeout(0.01))
    assert await pipeline.run(asyncio.sleep, 60) == "late"


async def test_decorator_sync_and_async() -> None:
    fallback = sw.Fallback(value=-1)

    @fallback
    async def parse_async(text: str) -> int:
        return int(text)

    @fallback
    def parse(text: str) -> int:
        return int(text)

    assert inspect.iscoroutinefunction(parse_async)
    assert await parse_async("12") == 12
    assert await parse_async("x") == -1
    assert parse("7") == 7
    assert parse("x") == -1
    assert parse.__name__ == "parse"
