"""Pipeline: order (entry/exit recorded), the entry points, composition, and Pipeline.standard with real policies."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import stalwart as sw

FOREVER = 60.0


class Recorder(sw.Policy):
    """A test policy that logs when a call enters and leaves it."""

    __slots__ = ("log", "name")

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def run(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"enter {self.name}")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.log.append(f"exit {self.name}")

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"enter {self.name}")
        try:
            return fn(*args, **kwargs)
        finally:
            self.log.append(f"exit {self.name}")


class TwoAttempts(sw.Policy):
    """A test policy that calls its function a second time when the first attempt raises."""

    __slots__ = ()

    async def run(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except ValueError:
            return await fn(*args, **kwargs)

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValueError:
            return fn(*args, **kwargs)


@pytest.fixture
def log() -> list[str]:
    return []


def three(log: list[str]) -> sw.Pipeline:
    return sw.Pipeline(Recorder("a", log), Recorder("b", log), Recorder("c", log))


NESTED = ["enter a", "enter b", "enter c", "call", "exit c", "exit b", "exit a"]


async def test_async_order_is_outermost_first(log: list[str]) -> None:
    async def fn(x: int) -> int:
        log.append("call")
        return x

    assert await three(log).run(fn, 5) == 5
    assert log == NESTED


def test_sync_order_is_outermost_first(log: list[str]) -> None:
    def fn(x: int) -> int:
        log.append("call")
        return x

    assert three(log).call(fn, 5) == 5
    assert log == NESTED


async def test_exit_order_on_error(log: list[str]) -> None:
    async def fn() -> None:
        log.append("call")
        raise KeyError

    with pytest.raises(KeyError):
        await three(log).run(fn)
    assert log == NESTED


async def test_a_policy_that_calls_again_reruns_everything_inside_it(log: list[str]) -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        log.append("call")
        if attempts == 1:
            raise ValueError
        return "ok"

    pipeline = sw.Pipeline(Recorder("outer", log), TwoAttempts(), Recorder("inner", log))
    assert await pipeline.run(flaky) == "ok"
    assert log == [
        "enter outer",
        "enter inner",
        "call",
        "exit inner",
        "enter inner",
        "call",
        "exit inner",
        "exit outer",
    ]
    log.clear()
    attempts = 0

    def flaky_sync() -> str:
        nonlocal attempts
        attempts += 1
        log.append("call")
        if attempts == 1:
            raise ValueError
        return "ok"

    assert pipeline.call(flaky_sync) == "ok"
    assert log.count("enter inner") == 2


async def test_arguments_pass_through_including_a_keyword_named_fn() -> None:
    async def fn(a: int, b: int = 0, *, fn: str = "") -> tuple[int, int, str]:
        return a, b, fn

    pipeline = sw.Pipeline(sw.Timeout(FOREVER), sw.Fallback(value=None))
    assert await pipeline.run(fn, 1, b=2, fn="kw") == (1, 2, "kw")
    assert pipeline.call(lambda *a, **k: (a, k), 1, fn=3) == ((1,), {"fn": 3})


async def test_empty_pipeline_calls_directly() -> None:
    async def fn(x: int) -> int:
        return x + 1

    empty = sw.Pipeline()
    assert empty.policies == ()
    assert await empty.run(fn, 1) == 2
    assert empty.call(lambda: "sync") == "sync"


def test_only_policies_are_accepted() -> None:
    with pytest.raises(TypeError, match="argument 1"):
        sw.Pipeline(sw.Timeout(1.0), lambda fn: fn)  # type: ignore[arg-type]


def test_policies_and_repr_keep_the_order_given() -> None:
    timeout = sw.Timeout(1.0)
    fallback = sw.Fallback(value=0)
    pipeline = sw.Pipeline(timeout, fallback)
    assert pipeline.policies == (timeout, fallback)
    assert repr(pipeline) == "Pipeline(Timeout(1.0), Fallback(value=0))"


async def test_pipelines_nest(log: list[str]) -> None:
    inner = sw.Pipeline(Recorder("b", log), Recorder("c", log))
    outer = sw.Pipeline(Recorder("a", log), inner)

    async def fn() -> None:
        log.append("call")

    await outer.run(fn)
    assert log == NESTED


async def test_decorator(log: list[str]) -> None:
    pipeline = three(log)

    @pipeline
    async def fetch(x: int) -> int:
        """Doc."""
        log.append("call")
        return x * 2

    @pipeline
    def compute(x: int) -> int:
        log.append("call")
        return x * 3

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Doc."
    assert await fetch(2) == 4
    assert log == NESTED
    log.clear()
    assert compute(2) == 6
    assert log == NESTED

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        pipeline(gen)


async def test_concurrent_calls_do_not_share_state() -> None:
    pipeline = sw.Pipeline(sw.Fallback(value="fb"), sw.Timeout(FOREVER))

    async def fn(i: int) -> int:
        await asyncio.sleep(0)
        if i % 3 == 0:
            raise ValueError
        return i

    results = await asyncio.gather(*(pipeline.run(fn, i) for i in range(30)))
    assert results == ["fb" if i % 3 == 0 else i for i in range(30)]


# -- Pipeline.standard ------------------------------------------------------------------------------------------


def test_standard_order_and_skipping() -> None:
    fallback = sw.Fallback(value=None)
    retry = sw.Retry(on=ConnectionError)
    breaker = Recorder("stands in for a breaker", [])
    bulkhead = sw.Bulkhead("dep")
    attempt = sw.Timeout(2.0)
    pipeline = sw.Pipeline.standard(
        attempt_timeout=attempt,
        bulkhead=bulkhead,
        breaker=breaker,
        retry=retry,
        total_timeout=10.0,
        fallback=fallback,
    )
    policies = pipeline.policies
    assert len(policies) == 6
    assert policies[0] is fallback
    assert isinstance(policies[1], sw.Timeout)
    assert policies[1].seconds == 10.0
    assert policies[2:] == (retry, breaker, bulkhead, attempt)

    only = sw.Pipeline.standard(breaker=breaker, attempt_timeout=2)
    assert only.policies[0] is breaker
    assert isinstance(only.policies[1], sw.Timeout)
    assert sw.Pipeline.standard().policies == ()


def test_standard_validates_its_arguments() -> None:
    with pytest.raises(TypeError, match="total_timeout"):
        sw.Pipeline.standard(total_timeout="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds"):
        sw.Pipeline.standard(attempt_timeout=0)
    with pytest.raises(TypeError, match="retry must be a policy or None"):
        sw.Pipeline.standard(retry=object())  # type: ignore[arg-type]


async def test_decorating_uses_each_policys_own_decorator_checks() -> None:
    async def handler(exc: BaseException) -> str:
        return "async"

    pipeline = sw.Pipeline(sw.Timeout(FOREVER), sw.Fallback(handler=handler))
    with pytest.raises(TypeError, match="async fallback handler"):
        pipeline(lambda: None)

    @pipeline
    async def fails() -> str:
        raise ValueError

    assert await fails() == "async"


async def test_empty_pipeline_decorates() -> None:
    empty = sw.Pipeline()

    @empty
    async def fetch() -> str:
        return "async"

    @empty
    def compute() -> str:
        return "sync"

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch() == "async"
    assert compute() == "sync"
    assert compute.__name__ == "compute"
