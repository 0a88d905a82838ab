"""The attempt header is on the wire for each attempt and off the caller's request afterwards (both code paths)."""

from __future__ import annotations

import httpx
import pytest
from _http_harness import Harness

from stalwart.httpx._wire import RAW_HEADERS, AttemptHeader


def test_the_internal_header_layout_probe_holds_for_the_installed_httpx() -> None:
    assert RAW_HEADERS  # if httpx changes its Headers internals, the public path is used (and this flags it)


@pytest.mark.parametrize("raw", [True, False])
def test_stamp_and_unstamp_restore_the_headers(raw: bool) -> None:
    header = AttemptHeader("Stalwart-Attempt", raw=raw)
    request = httpx.Request("GET", "https://example.com/", headers={"Accept": "*/*"})
    before = request.headers.raw
    for attempt in (1, 2, 70):
        token = header.stamp(request, attempt)
        assert request.headers["stalwart-attempt"] == str(attempt)
        assert request.headers.get_list("stalwart-attempt") == [str(attempt)]
        header.unstamp(request, token)
        assert request.headers.raw == before


@pytest.mark.parametrize("raw", [True, False])
def test_a_header_set_by_the_caller_is_replaced_then_restored(raw: bool) -> None:
    header = AttemptHeader("Stalwart-Attempt", raw=raw)
    request = httpx.Request("GET", "https://example.com/", headers={"Stalwart-Attempt": "7"})
    token = header.stamp(request, 2)
    assert request.headers.get_list("stalwart-attempt") == ["2"]
    header.unstamp(request, token)
    assert request.headers["stalwart-attempt"] == "7"


def test_unstamp_finds_the_entry_when_headers_were_added_after_it() -> None:
    header = AttemptHeader("Stalwart-Attempt", raw=True)
    request = httpx.Request("GET", "https://example.com/")
    token = header.stamp(request, 1)
    request.headers["Authorization"] = "Bearer x"  # e.g. an inner transport signing the request
    header.unstamp(request, token)
    assert "stalwart-attempt" not in request.headers
    assert request.headers["authorization"] == "Bearer x"


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_transport_leaves_the_callers_request_as_built(mode: str, raw: bool) -> None:
    h = Harness(mode, [503, 503, 200])
    h.transport._attempt_header = AttemptHeader("Stalwart-Attempt", raw=raw)
    response = await h.request(headers={"X-Trace": "t1"})
    assert h.upstream.attempts == ["1", "2", "3"]
    assert all(headers["x-trace"] == "t1" for headers in h.upstream.headers)
    assert "stalwart-attempt" not in response.request.headers
    assert response.request.headers["x-trace"] == "t1"


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_the_header_is_removed_after_a_failed_attempt_too(mode: str) -> None:
    h = Harness(mode, [httpx.ConnectError("refused")])
    request = httpx.Request("GET", "https://api.example.com/")
    with pytest.raises(httpx.ConnectError):
        await h.send(request)
    assert h.upstream.attempts == ["1", "2", "3"]
    assert "stalwart-attempt" not in request.headers
