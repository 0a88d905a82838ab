"""IdempotencyMiddleware: gate, header, principal, replay, mismatch, in-progress (spec §2.2 - §2.4, §2.8, §2.10)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from idem_apps import Probe, client, headers, make_app, wrap
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from stalwart import IdempotentReplay, add_hook, remove_hook
from stalwart.idempotency import FingerprintSpec, IdempotencyConfig, Identity, MemoryStore, is_uuid4

PAYLOAD = {"amount": 100, "currency": "EUR"}


async def test_first_request_executes_and_the_retry_replays_exactly() -> None:
    probe = Probe()
    mw = wrap(make_app(probe))
    async with client(mw) as c:
        first = await c.post("/payments", json=PAYLOAD, headers=headers())
        second = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert probe.calls == 1
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"] == "/payments/1"
    assert second.headers["x-trace"] == "t"
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["content-length"] == str(len(second.content))
    assert "set-cookie" in first.headers
    assert "set-cookie" not in second.headers  # denied by default
    assert mw.statistics()["claims"] == 1
    assert mw.statistics()["replays"] == 1


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_other_methods_pass_through_even_with_a_bad_key(method: str) -> None:
    probe = Probe()
    async with client(wrap(make_app(probe))) as c:
        for _ in range(2):
            r = await c.request(method, "/payments", headers=headers(key='"unterminated'))
            assert r.status_code == 201
    assert probe.calls == 2


async def test_cors_preflight_is_never_intercepted() -> None:
    probe = Probe()
    app = make_app(probe, extra_routes=[Route("/pre", lambda r: PlainTextResponse("ok"), methods=["OPTIONS"])])
    mw = wrap(app, config=IdempotencyConfig(methods=frozenset({"POST", "OPTIONS"}), required=True))
    async with client(mw) as c:
        for _ in range(2):
            r = await c.options("/pre", headers=headers(key='"bad'))
            assert r.status_code == 200
            assert "idempotent-replayed" not in r.headers


async def test_non_http_scopes_pass_through() -> None:
    seen: list[tuple[str, str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], (await receive())["type"]))

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup" if lifespan else "websocket.connect"}

    mw = wrap(app)
    for lifespan in (False, True):  # the lifespan's start-up event is passed on (after the store's check, if any)
        await mw({"type": "lifespan" if lifespan else "websocket"}, receive, None)  # type: ignore[arg-type]
    assert seen == [("websocket", "websocket.connect"), ("lifespan", "lifespan.startup")]


async def test_missing_key_optional_passes_through_and_required_is_400() -> None:
    probe = Probe()
    async with client(wrap(make_app(probe))) as c:
        for _ in range(2):
            assert (await c.post("/payments", json=PAYLOAD, headers=headers(key=None))).status_code == 201
    assert probe.calls == 2
    probe = Probe()
    mw = wrap(make_app(probe), config=IdempotencyConfig(required=True), docs_url="https://docs.example/idem")
    async with client(mw) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers(key=None))
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["link"] == '<https://docs.example/idem>; rel="describedby"'
    assert r.json()["type"].endswith("/idempotency-key-missing")
    assert r.json()["status"] == 400
    assert probe.calls == 0


@pytest.mark.parametrize(
    "raw",
    [
        [("idempotency-key", "a"), ("idempotency-key", "a")],
        [("idempotency-key", "k" * 256)],
        [("idempotency-key", "a,b")],
    ],
)
async def test_invalid_keys_are_400_and_never_reach_the_handler(raw: list[tuple[str, str]]) -> None:
    probe = Probe()
    async with client(wrap(make_app(probe))) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=[*raw, ("x-user", "alice")])
    assert r.status_code == 400
    assert r.json()["type"].endswith("/idempotency-key-invalid")
    assert probe.calls == 0


async def test_strict_header_mode_and_key_format() -> None:
    probe = Probe()
    config = IdempotencyConfig(lenient_header=False, key_validator=is_uuid4)
    mw = wrap(make_app(probe), config=config)
    key = str(uuid.uuid4())
    async with client(mw) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers(key=key))).status_code == 400
        assert (await c.post("/payments", json=PAYLOAD, headers=headers(key='"not-a-uuid"'))).status_code == 400
        assert (await c.post("/payments", json=PAYLOAD, headers=headers(key=f'"{key}"'))).status_code == 201
    assert mw.statistics()["lenient_header_accepts"] == 0


async def test_lenient_accepts_are_counted() -> None:
    mw = wrap(make_app(Probe()))
    async with client(mw) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers(key="bare-key"))
    assert mw.statistics()["lenient_header_accepts"] == 1


async def test_principal_required_unless_anonymous_with_a_random_key() -> None:
    probe = Probe()
    async with client(wrap(make_app(probe))) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers(user=None))
    assert r.status_code == 401
    assert r.json()["type"].endswith("/idempotency-principal-required")
    assert probe.calls == 0

    def broken(scope: Any) -> None:
        raise RuntimeError("auth backend down")

    async with client(wrap(make_app(probe), resolver=broken)) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 401
    assert probe.calls == 0

    mw = wrap(make_app(probe), config=IdempotencyConfig(allow_anonymous=True))
    key = str(uuid.uuid4())
    async with client(mw) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers(key="guessable", user=None))).status_code == 400
        first = await c.post("/payments", json=PAYLOAD, headers=headers(key=key, user=None))
        again = await c.post("/payments", json=PAYLOAD, headers=headers(key=key, user=None))
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert probe.calls == 1


async def test_async_resolver() -> None:
    async def resolve(scope: Any) -> Identity:
        await asyncio.sleep(0)
        return Identity("bob")

    probe = Probe()
    async with client(wrap(make_app(probe), resolver=resolve)) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers(user=None))
        r = await c.post("/payments", json=PAYLOAD, headers=headers(user=None))
    assert r.headers["idempotent-replayed"] == "true"
    assert probe.calls == 1


async def test_a_different_request_with_the_same_key_is_422() -> None:
    probe = Probe()
    mw = wrap(make_app(probe))
    async with client(mw) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers())
        body = await c.post("/payments", json={**PAYLOAD, "amount": 1}, headers=headers())
        path = await c.post("/other", json=PAYLOAD, headers=headers())  # method and path are in the fingerprint
        query = await c.post("/payments?x=1", json=PAYLOAD, headers=headers())
        method = await c.patch("/payments", json=PAYLOAD, headers=headers())
    for r in (body, path, query, method):
        assert r.status_code == 422
        assert r.json()["type"].endswith("/idempotency-key-reused")
    assert probe.calls == 1
    assert mw.statistics()["mismatches_422"] == 4


async def test_scope_by_route_gives_each_endpoint_its_own_keys() -> None:
    probe = Probe()
    async with client(wrap(make_app(probe), config=IdempotencyConfig(scope_by_route=True))) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 201
        assert (await c.post("/other", json=PAYLOAD, headers=headers())).status_code == 201
    assert probe.calls == 2


async def test_json_canonical_fingerprint_option() -> None:
    probe = Probe()
    config = IdempotencyConfig(fingerprint=FingerprintSpec(json_canonical=True))
    async with client(wrap(make_app(probe), config=config)) as c:
        h = headers(**{"content-type": "application/json"})
        await c.post("/payments", content=b'{"amount":100,"currency":"EUR"}', headers=h)
        r = await c.post("/payments", content=b'{ "currency": "EUR", "amount": 1e2 }', headers=h)
    assert r.headers["idempotent-replayed"] == "true"
    assert probe.calls == 1


async def test_concurrent_duplicate_gets_409_with_retry_after_and_mismatch_wins() -> None:
    probe = Probe()
    probe.hold()
    mw = wrap(make_app(probe), config=IdempotencyConfig(lease_ttl=30.0))
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        dup = await c.post("/payments", json=PAYLOAD, headers=headers())
        other = await c.post("/payments", json={"amount": 5}, headers=headers())
        probe.release()
        first = await original
        replay = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert dup.status_code == 409
    assert dup.json()["type"].endswith("/idempotency-request-in-progress")
    assert dup.headers["retry-after"] == "5"  # min(lease remaining, cap 5 s)
    assert other.status_code == 422
    assert first.status_code == 201
    assert replay.content == first.content
    assert probe.calls == 1
    assert mw.statistics()["conflicts_409"] == 1


async def test_retry_after_follows_the_remaining_lease() -> None:
    probe = Probe()
    probe.hold()
    mw = wrap(make_app(probe), config=IdempotencyConfig(lease_ttl=1.5, heartbeat_every=1.0))
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        dup = await c.post("/payments", json=PAYLOAD, headers=headers())
        probe.release()
        await original
    assert dup.headers["retry-after"] in {"1", "2"}


async def test_wait_timeout_lets_a_duplicate_wait_for_the_replay() -> None:
    probe = Probe()
    probe.hold()
    mw = wrap(make_app(probe), config=IdempotencyConfig(wait_timeout=30.0))
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        dup = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await asyncio.sleep(0.01)
        assert not dup.done()
        probe.release()
        first, second = await original, await dup
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert probe.calls == 1


async def test_status_is_replayed_exactly_including_204() -> None:
    async def no_content(request: Request) -> Response:
        return Response(status_code=204, headers={"etag": '"v1"'})

    probe = Probe()
    async with client(wrap(make_app(probe, no_content))) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers())
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert (r.status_code, r.content, r.headers["etag"]) == (204, b"", '"v1"')
    assert r.headers["idempotent-replayed"] == "true"


async def test_replay_header_name_and_first_response_marker() -> None:
    config = IdempotencyConfig(replay_header="Idempotency-Replay", mark_first_response=True)
    async with client(wrap(make_app(Probe()), config=config)) as c:
        first = await c.post("/payments", json=PAYLOAD, headers=headers())
        second = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert first.headers["idempotency-replay"] == "false"
    assert second.headers.get_list("idempotency-replay") == ["true"]


async def test_request_body_limit_is_413() -> None:
    probe = Probe()
    async with client(wrap(make_app(probe), config=IdempotencyConfig(max_request_body=10))) as c:
        declared = await c.post("/payments", content=b"x" * 11, headers=headers())

        async def chunks() -> Any:
            yield b"x" * 6
            yield b"x" * 6

        streamed = await c.post("/payments", content=chunks(), headers=headers(key="k-2"))
        fits = await c.post("/payments", content=b"x" * 10, headers=headers(key="k-3"))
    assert declared.status_code == streamed.status_code == 413
    assert declared.json()["type"].endswith("/idempotency-request-too-large")
    assert fits.status_code == 201
    assert probe.calls == 1


async def test_replay_events_are_emitted() -> None:
    events: list[Any] = []
    add_hook(events.append)
    try:
        async with client(wrap(make_app(Probe()))) as c:
            await c.post("/payments", json=PAYLOAD, headers=headers())
            await c.post("/payments", json=PAYLOAD, headers=headers())
    finally:
        remove_hook(events.append)
    replays = [e for e in events if isinstance(e, IdempotentReplay)]
    assert replays == [IdempotentReplay(201, "/payments")]


async def test_routes_mapping_and_app_wide_switch() -> None:
    probe = Probe()
    routes = {"POST /payments": IdempotencyConfig(required=True), "/other": None}
    mw = wrap(make_app(probe), enabled=False, routes=routes)
    async with client(mw) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers(key=None))).status_code == 400
        for _ in range(2):
            assert (await c.post("/other", json=PAYLOAD, headers=headers())).status_code == 201
        for _ in range(2):  # not configured and enabled=False: pass through
            assert (await c.post("/stream", headers=headers())).status_code == 200
    assert probe.calls == 4
    with pytest.raises(ValueError, match="routes keys"):
        wrap(make_app(probe), routes={"payments": None})


async def test_path_templates_match_parameters() -> None:
    calls: list[str] = []

    async def item(request: Request) -> PlainTextResponse:
        calls.append(request.path_params["item"])
        return PlainTextResponse("ok")

    app = make_app(Probe(), extra_routes=[Route("/items/{item}", item, methods=["POST"])])
    mw = wrap(app, enabled=False, routes={"POST /items/{item}": IdempotencyConfig(required=True)})
    async with client(mw) as c:
        assert (await c.post("/items/7", headers=headers(key=None))).status_code == 400
        await c.post("/items/7", headers=headers())
        assert (await c.post("/items/7", headers=headers())).headers["idempotent-replayed"] == "true"
    assert calls == ["7"]


async def test_l1_cache_serves_replays_without_the_store() -> None:
    class CountingStore(MemoryStore):
        claims = 0

        async def claim(self, *args: Any, **kwargs: Any) -> Any:
            CountingStore.claims += 1
            return await super().claim(*args, **kwargs)

    mw = wrap(make_app(Probe()), CountingStore(), l1_cache=16)
    async with client(mw) as c:
        for _ in range(4):
            await c.post("/payments", json=PAYLOAD, headers=headers())
        mismatch = await c.post("/payments", json={"other": 1}, headers=headers())
    assert CountingStore.claims == 2  # the first run and the first replay; then L1
    assert mismatch.status_code == 422
    assert mw.statistics()["replays"] == 3


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="secret"):
        wrap(make_app(Probe()), secret=b"short")
    with pytest.raises(ValueError, match="heartbeat_every"):
        IdempotencyConfig(lease_ttl=10, heartbeat_every=10)
    with pytest.raises(ValueError, match="methods"):
        IdempotencyConfig(methods=frozenset())
    with pytest.raises(ValueError, match="release_statuses"):
        IdempotencyConfig(release_statuses=frozenset({99}))
    with pytest.raises(ValueError, match="replay_header"):
        IdempotencyConfig(replay_header="bad header")
    with pytest.raises(ValueError, match="retention"):
        IdempotencyConfig(retention=0)
    with pytest.raises(TypeError, match="retryable_exceptions"):
        IdempotencyConfig(retryable_exceptions=(int,))  # type: ignore[arg-type]


def test_short_retention_is_a_logged_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="stalwart"):
        IdempotencyConfig(retention=60)
    assert "under one hour" in caplog.text


_header_values = st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(_header_values, min_size=1, max_size=3))
def test_fuzzed_key_headers_get_400_or_the_handler_never_500(values: list[bytes]) -> None:
    async def run() -> tuple[int, int]:
        probe = Probe()
        mw = wrap(make_app(probe))
        messages: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/payments",
            "raw_path": b"/payments",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"x-user", b"alice"), *((b"idempotency-key", v) for v in values)],
            "server": ("test", 80),
            "client": ("127.0.0.1", 1),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"{}", "more_body": False}
            await asyncio.Event().wait()
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await mw(scope, receive, send)
        return messages[0]["status"], probe.calls

    status, calls = asyncio.run(run())
    assert status in (400, 201)
    assert (status == 201) == (calls == 1)
    if status == 400:
        assert calls == 0


async def test_problem_bodies_are_json_with_a_stable_type_base() -> None:
    mw = wrap(make_app(Probe()), problem_base="https://api.example/problems/")
    async with client(mw) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers(user=None))
    doc = json.loads(r.content)
    assert doc["type"] == "https://api.example/problems/idempotency-principal-required"
    assert set(doc) >= {"type", "title", "status"}
