"""The drivers' fast origin lookup (``TransportCore.first_use`` and ``_by_reference``): URLs naming one origin in
different spellings share its state, different origins do not, whichever request comes first."""

from __future__ import annotations

import httpx
import pytest

from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilientTransport

SAME = [
    "https://api.example.com/items",
    "https://API.Example.COM/other?q=1",
    "https://api.example.com:443/x",
    "https://user:secret@api.example.com/y",
    "HTTPS://api.example.com",
]
OTHERS = ["http://api.example.com/items", "https://api.example.com:8443/items", "https://www.example.com/items"]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


@pytest.mark.parametrize("order", ["same first", "others first"])
def test_spellings_of_one_origin_share_it_and_others_do_not_sync(order: str) -> None:
    transport = ResilientTransport(httpx.MockTransport(ok), registry=Registry())
    urls = SAME + OTHERS if order == "same first" else OTHERS + SAME
    seen = {}
    for url in urls:
        transport.handle_request(httpx.Request("GET", url)).close()
        seen[url] = transport.origin(url)
    assert {id(seen[url]) for url in SAME} == {id(transport.origin(SAME[0]))}
    assert len({id(seen[url]) for url in OTHERS} | {id(seen[SAME[0]])}) == len(OTHERS) + 1
    assert len(transport.bulkheads()) == len(OTHERS) + 1
    for url in urls:  # the fast table answers with the very state origin() names
        reference = httpx.URL(url)._uri_reference
        assert transport._by_reference[reference.scheme, reference.host, reference.port] is seen[url]


async def test_spellings_of_one_origin_share_it_async() -> None:
    transport = AsyncResilientTransport(httpx.MockTransport(ok), registry=Registry())
    for url in SAME:
        response = await transport.handle_async_request(httpx.Request("GET", url))
        await response.aclose()
    assert len(transport.bulkheads()) == 1
    assert set(transport._by_reference.values()) == {transport.origin(SAME[0])}
