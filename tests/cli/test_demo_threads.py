"""The demo's plumbing: serving on loopback, and running sides on their own threads and loops."""

from __future__ import annotations

import _thread
import asyncio
import socket
import threading

import httpx
import pytest

from stalwart.cli.demo._schedule import FaultSchedule
from stalwart.cli.demo._server import bind_loopback, serving, url_of
from stalwart.cli.demo._threads import LoopThread, run_side_by_side
from stalwart.cli.demo._upstream import FaultUpstream


def _refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


def test_bind_loopback_is_a_listening_tcp_socket_on_a_free_port() -> None:
    sock = bind_loopback()
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port > 0
        # Declared as TCP, so asyncio turns Nagle off on accepted connections (TCP_NODELAY).
        assert sock.proto == socket.IPPROTO_TCP
        assert url_of(sock) == f"http://127.0.0.1:{port}"
    finally:
        sock.close()


async def test_serving_answers_then_frees_the_port() -> None:
    sock = bind_loopback()
    upstream = FaultUpstream(FaultSchedule.outage(20.0))
    async with serving(upstream, sock) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        assert (await client.get("/r/1")).status_code == 200
    assert upstream.calls == {"healthy": 1}
    assert sock.fileno() == -1
    assert _refused(url)


async def test_serving_stops_when_cancelled() -> None:
    sock = bind_loopback()
    url = url_of(sock)
    started = asyncio.Event()

    async def serve_forever() -> None:
        async with serving(FaultUpstream(FaultSchedule.outage(20.0)), sock):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(serve_forever())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _refused(url)


async def test_serving_reports_a_server_that_cannot_start() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # not a stream socket: the server refuses it
    sock.bind(("127.0.0.1", 0))
    with pytest.raises(RuntimeError, match="start-up"):
        async with serving(FaultUpstream(FaultSchedule.outage(20.0)), sock):
            pass  # pragma: no cover
    assert sock.fileno() == -1


def test_loop_thread_result_and_error() -> None:
    async def fine() -> int:
        await asyncio.sleep(0)
        return 42

    async def broken() -> int:
        raise ValueError("boom")

    good, bad = LoopThread("good", fine), LoopThread("bad", broken)
    with pytest.raises(RuntimeError, match="not finished"):
        good.result()
    run_side_by_side([good, bad])
    assert good.result() == 42
    assert not good.failed
    assert bad.failed
    with pytest.raises(ValueError, match="boom"):
        bad.result()


def test_a_failing_side_cancels_the_other_which_cleans_up() -> None:
    cleaned = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    async def broken() -> None:
        raise ValueError("boom")

    waiting, failing = LoopThread("waiting", forever), LoopThread("failing", broken)
    run_side_by_side([waiting, failing])
    assert cleaned.is_set()
    with pytest.raises(asyncio.CancelledError):
        waiting.result()


def test_cancel_before_start_never_runs_the_coroutine() -> None:
    ran = False

    async def body() -> None:
        nonlocal ran
        ran = True  # pragma: no cover

    thread = LoopThread("early", body)
    thread.cancel()
    thread.start()
    assert thread.join(10)
    assert not ran
    with pytest.raises(asyncio.CancelledError):
        thread.result()


def test_ctrl_c_while_waiting_cancels_every_side_and_propagates() -> None:
    started = [threading.Event(), threading.Event()]
    cleaned = [threading.Event(), threading.Event()]

    def side(index: int):  # type: ignore[no-untyped-def]
        async def body() -> None:
            started[index].set()
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)  # clean-up may await
                cleaned[index].set()

        return body

    def press_ctrl_c() -> None:
        for event in started:
            event.wait(10)
        _thread.interrupt_main()  # delivers SIGINT's KeyboardInterrupt to the main thread

    threads = [LoopThread("a", side(0)), LoopThread("b", side(1))]
    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        run_side_by_side(threads)
    presser.join()
    assert all(event.is_set() for event in cleaned)
    assert all(thread.join(0) for thread in threads)
