"""`stalwart demo --scenario payments`: settings, tallies, the report, the stores, and whole runs on loopback."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from rich.console import Console

from stalwart.cli import build_parser, main
from stalwart.cli.demo import SCENARIOS
from stalwart.cli.demo import _payments as payments
from stalwart.cli.demo._payments import DemoError, PaymentsResult, PaymentsSettings, Tally, demo_store, run_payments
from stalwart.cli.demo._payments_report import render_payments
from stalwart.idempotency import SQLiteStore

SIDE_KEYS = {
    "payments_requested",
    "requests_sent",
    "charges_executed",
    "extra_charges",
    "duplicates_prevented",
    "replays_served",
    "conflicts_409",
    "errors",
}


def check_document(document: dict[str, Any], payments_requested: int, store: str) -> None:
    """The scenario's JSON numbers are consistent (also used by the subprocess tests)."""
    assert set(document) == {"scenario", "store", "payments", "without_middleware", "with_middleware"}
    assert (document["scenario"], document["store"], document["payments"]) == ("payments", store, payments_requested)
    without, with_ = document["without_middleware"], document["with_middleware"]
    for side in (without, with_):
        assert set(side) == SIDE_KEYS
        assert side["payments_requested"] == payments_requested
        assert side["errors"] == 0
        assert side["requests_sent"] >= side["payments_requested"]
        assert side["extra_charges"] == max(0, side["charges_executed"] - payments_requested)
        assert side["duplicates_prevented"] == side["replays_served"] + side["conflicts_409"]
    # Without the middleware every request charges: lost answers and double clicks charge again.
    assert without["charges_executed"] == without["requests_sent"] > payments_requested
    assert without["duplicates_prevented"] == without["replays_served"] == without["conflicts_409"] == 0
    # With it every payment is charged exactly once; every other request was a replay or a 409.
    assert with_["charges_executed"] == payments_requested
    assert with_["extra_charges"] == 0
    assert with_["requests_sent"] == with_["charges_executed"] + with_["duplicates_prevented"]
    assert with_["replays_served"] > 0


# -- settings, tallies, report --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"payments": 0}, "payments"),
        ({"concurrency": 0}, "concurrency"),
        ({"store": "mongo"}, "store"),
        ({"loss_rate": -0.1}, "loss_rate"),
        ({"loss_rate": 0.95}, "loss_rate"),
        ({"duplicate_rate": 1.5}, "duplicate_rate"),
        ({"charge_delay": -1.0}, "charge_delay"),
        ({"charge_delay": 11.0}, "charge_delay"),
    ],
)
def test_settings_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PaymentsSettings(**kwargs)


def test_tally_arithmetic() -> None:
    tally = Tally(requested=10, sent=17, replays=5, conflicts=2, charges=10)
    assert tally.duplicates_prevented == 7
    assert tally.extra_charges == 0
    assert Tally(requested=10, sent=17, charges=17).extra_charges == 7
    assert tally.document() == {
        "payments_requested": 10,
        "requests_sent": 17,
        "charges_executed": 10,
        "extra_charges": 0,
        "duplicates_prevented": 7,
        "replays_served": 5,
        "conflicts_409": 2,
        "errors": 0,
    }


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 3 and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def _render(result: PaymentsResult) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(render_payments(result))
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def test_report_rows() -> None:
    result = PaymentsResult(
        Tally(requested=200, sent=308, charges=308),
        Tally(requested=200, sent=326, replays=110, conflicts=16, charges=200),
        "redis",
        200,
    )
    text = _render(result)
    assert "IdempotencyMiddleware (Redis)" in text
    rows = _rows(text)
    assert rows["payments requested"] == ["200", "200"]
    assert rows["requests sent"] == ["308", "326"]
    assert rows["charges executed"] == ["308", "200"]
    assert rows["extra charges"] == ["108", "0"]
    assert rows["duplicates prevented"] == ["0", "126"]
    assert rows["replays served"] == ["0", "110"]
    assert rows["409 while in progress"] == ["0", "16"]
    assert "errors" not in rows


def test_report_shows_errors_only_when_there_are_some() -> None:
    result = PaymentsResult(Tally(requested=1, sent=1, charges=1), Tally(requested=1, sent=2, errors=1), "sqlite", 1)
    assert _rows(_render(result))["errors"] == ["0", "1"]


# -- the command line -----------------------------------------------------------------------------------------------


def test_options() -> None:
    args = build_parser().parse_args(["demo", "--scenario", "payments"])
    assert (args.scenario, args.payments, args.store) == ("payments", 200, None)
    args = build_parser().parse_args(["demo", "--scenario", "payments", "--payments", "7", "--store", "redis"])
    assert (args.payments, args.store) == (7, "redis")
    assert "payments" in SCENARIOS


@pytest.mark.parametrize("argv", [["--payments", "0"], ["--store", "mongo"]])
def test_invalid_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--scenario", "payments", *argv])
    assert info.value.code == 2


def test_invalid_store_variable_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STALWART_STORE", "mongo")
    assert main(["demo", "--scenario", "payments"]) == 2
    assert "STALWART_STORE must be one of sqlite, redis, postgres, not 'mongo'" in capsys.readouterr().err


def _fake_run(seen: list[PaymentsSettings], error: Exception | None = None) -> Any:
    def run(settings: PaymentsSettings, *, on_start: Any = None) -> PaymentsResult:
        seen.append(settings)
        if error is not None:
            raise error
        return PaymentsResult(Tally(requested=3, sent=4, charges=4), Tally(requested=3, sent=4, replays=1), "x", 3)

    return run


def test_store_from_the_environment_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[PaymentsSettings] = []
    monkeypatch.setattr(payments, "run_payments", _fake_run(seen))
    monkeypatch.setenv("STALWART_STORE", "postgres")
    assert main(["demo", "--scenario", "payments", "--json", "--payments", "3", "--seed", "5"]) == 0
    assert (seen[0].store, seen[0].payments, seen[0].seed) == ("postgres", 3, 5)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["with_middleware"]["replays_served"] == 1
    assert main(["demo", "--scenario", "payments", "--store", "redis"]) == 0  # the option wins over the variable
    assert seen[1].store == "redis"


def test_an_unusable_store_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(payments, "run_payments", _fake_run([], DemoError("the redis store is not reachable")))
    assert main(["demo", "--scenario", "payments"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "stalwart demo: the redis store is not reachable" in captured.err


def test_the_scenario_function_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []
    monkeypatch.setitem(SCENARIOS, "payments", lambda args: seen.append(args) or 0)
    assert main(["demo", "--scenario", "payments"]) == 0
    assert seen[0].scenario == "payments"


# -- stores ---------------------------------------------------------------------------------------------------------


async def test_sqlite_store_lives_in_a_temporary_directory_removed_afterwards() -> None:
    async with demo_store("sqlite") as store:
        assert isinstance(store, SQLiteStore)
        directory = Path(store.path).parent
        assert directory.is_dir()
    assert not directory.exists()


async def test_an_unreachable_redis_is_a_demo_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(DemoError, match=r"redis store is not reachable at redis://127\.0\.0\.1:1/0"):
        async with demo_store("redis"):
            pytest.fail("no store")


async def test_an_unknown_store_is_a_demo_error() -> None:
    with pytest.raises(DemoError, match="unknown store"):
        async with demo_store("mongo"):
            pytest.fail("no store")


@pytest.mark.integration
async def test_redis_keys_are_removed_afterwards(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    async with demo_store("redis") as store:
        prefix = store.prefix  # type: ignore[attr-defined]
        claimed = await store.claim("r", fingerprint=b"f", fp_version=1, owner_token="o", lease_ttl=5, retention=60)
        assert claimed.claimed
        client = store.client  # type: ignore[attr-defined]
        assert [key async for key in client.scan_iter(match=f"{{{prefix}}}*")]
    with redis.Redis.from_url(redis_url) as check:
        assert list(check.scan_iter(match=f"{{{prefix}}}*")) == []


@pytest.mark.integration
async def test_postgres_schema_is_dropped_afterwards(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    async with demo_store("postgres") as store:
        schema = store.schema  # type: ignore[attr-defined]
        claimed = await store.claim("r", fingerprint=b"f", fp_version=1, owner_token="o", lease_ttl=5, retention=60)
        assert claimed.claimed
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall()
    assert found == []


# -- whole runs on loopback (in process) ----------------------------------------------------------------------------


def test_a_run_charges_each_payment_once_with_the_middleware_only() -> None:
    result = run_payments(PaymentsSettings(payments=12, concurrency=4))
    check_document(result.document(), 12, "sqlite")


def test_a_run_reports_its_urls_before_serving() -> None:
    seen: list[list[str]] = []
    run_payments(PaymentsSettings(payments=1, duplicate_rate=0.0, loss_rate=0.0), on_start=seen.append)
    assert len(seen) == 1
    assert all(url.startswith("http://127.0.0.1:") for url in seen[0])
    assert len(set(seen[0])) == 2


def test_double_clicks_are_charged_once() -> None:
    # duplicate_rate=1: every payment is sent twice at once; the middleware still charges it once.
    result = run_payments(PaymentsSettings(payments=6, concurrency=6, duplicate_rate=1.0, charge_delay=0.05))
    without, with_ = result.without_middleware, result.with_middleware
    assert without.charges >= 12
    assert with_.charges == 6
    assert with_.sent == with_.charges + with_.replays + with_.conflicts


@pytest.mark.integration
@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_a_run_on_a_durable_store(
    store: str, redis_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = run_payments(PaymentsSettings(payments=10, concurrency=4, store=store))
    check_document(result.document(), 10, store)
