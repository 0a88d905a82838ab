"""The payments example (examples/payments_api.py, serving ``stalwart.cli.demo._payments_app``).

The scenario (examples/payments_demo.py = ``stalwart demo --scenario payments``) is tested in tests/cli.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from stalwart.idempotency import SQLiteStore
from stalwart.idempotency.stores.redis import RedisStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BODY = {"amount": 1250, "currency": "eur", "recipient": "bob"}


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pydantic look the module up by name
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture
def payments() -> ModuleType:
    return load("payments_api")


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def auth(user: str | None, key: str | None = "order-42") -> dict[str, str]:
    out = {}
    if user:
        out["authorization"] = f"Bearer {user}"
    if key:
        out["idempotency-key"] = key
    return out


async def test_a_retried_payment_is_charged_once(payments: ModuleType, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.sqlite3")
    app = payments.create_app(store=store)
    async with client(app) as c:
        first = await c.post("/payments", json=BODY, headers=auth("alice"))
        again = await c.post("/payments", json=BODY, headers=auth("alice"))
        bob = await c.post("/payments", json=BODY, headers=auth("bob"))
        stats = (await c.get("/stats")).json()
    await store.aclose()
    assert first.status_code == 201
    assert set(first.json()) == {"payment_id", "amount", "currency", "status"}
    assert first.json()["currency"] == "EUR"
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert bob.json()["payment_id"] != first.json()["payment_id"]  # same key, another user: another payment
    assert stats["charges"] == 2
    assert stats["idempotency"]["replays"] == 1


async def test_auth_key_and_validation_answers(payments: ModuleType, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.sqlite3")
    app = payments.create_app(store=store)
    async with client(app) as c:
        assert (await c.post("/payments", json=BODY, headers=auth(None))).status_code == 401
        assert (await c.post("/payments", json=BODY, headers=auth("alice", key=None))).status_code == 400
        invalid = await c.post("/payments", json={"amount": -1}, headers=auth("alice"))
        assert invalid.status_code == 422
        fixed = await c.post("/payments", json=BODY, headers=auth("alice"))  # the 422 released the key
        assert fixed.status_code == 201
        assert "idempotent-replayed" not in fixed.headers
        assert (await c.get("/stats")).json()["charges"] == 1
    await store.aclose()


async def test_without_the_middleware_every_retry_charges_again(payments: ModuleType) -> None:
    app = payments.create_app(idempotency=False)
    async with client(app) as c:
        for _ in range(3):
            await c.post("/payments", json=BODY, headers=auth("alice"))
        assert (await c.get("/stats")).json() == {"charges": 3, "idempotency": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_runs_under_uvicorn_from_the_documented_command(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "STALWART_SQLITE_PATH": str(tmp_path / "p.sqlite3"), "STALWART_STORE": "sqlite"}
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "payments_api:app", "--port", str(port)]
    log = (tmp_path / "uvicorn.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            for _ in range(300):
                try:
                    c.get("/stats")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            first = c.post("/payments", json=BODY, headers=auth("alice"))
            again = c.post("/payments", json=BODY, headers=auth("alice"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


def test_a_store_that_needs_a_secret_refuses_to_start_without_one(
    payments: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STALWART_IDEMPOTENCY_SECRET", raising=False)
    store = RedisStore.from_url("redis://127.0.0.1:1/0")  # never contacted: the check happens before any request
    with pytest.raises(ValueError, match="STALWART_IDEMPOTENCY_SECRET"):
        payments.create_app(store=store)
    assert payments.create_app(store=store, secret=b"s" * 32) is not None


def test_the_store_comes_from_stalwart_store(
    payments: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STALWART_SQLITE_PATH", str(tmp_path / "x.sqlite3"))
    monkeypatch.setenv("STALWART_STORE", "sqlite")
    assert isinstance(payments.make_store(), SQLiteStore)
    monkeypatch.setenv("STALWART_STORE", "redis")
    assert type(payments.make_store()).__name__ == "RedisStore"
    monkeypatch.setenv("STALWART_STORE", "postgres")
    assert type(payments.make_store()).__name__ == "PostgresStore"
    monkeypatch.setenv("STALWART_STORE", "mongo")
    with pytest.raises(ValueError, match="STALWART_STORE must be one of sqlite, redis, postgres"):
        payments.make_store()
