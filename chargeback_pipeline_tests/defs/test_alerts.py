"""The alert sensor against a webhook on 127.0.0.1: real marts check evaluations, each finding
posted once, retried after a failed post, never a user column."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from deltalake import write_deltalake

from chargeback_pipeline.defs.alerts import WEBHOOK_VARIABLE, chargeback_alerts
from chargeback_pipeline.defs.marts import dbt_like_marts
from chargeback_pipeline.lib.alerts import (
    Alert,
    AlertState,
    CheckFailure,
    alerts_for,
    deliver,
    dump_state,
    load_state,
)
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline_tests.lib.test_finops_marts import (
    ANOMALY_ROWS,
    costs_frame,
    usage,
    write_seeds,
)

USER_HASH = "hash-of-a-user-0123456789abcdef"
# CC-A and the total spike on 2026-03-08 (see test_finops_marts); CC-D overspends its 50.00
ROWS = [
    *[row | {"user_hash": USER_HASH, "app_id": "app-1"} for row in ANOMALY_ROWS],
    usage("2026-03-08T10:00:00", "d-8", "CC-D", "60.00", user_hash=USER_HASH),
]


class Webhook(ThreadingHTTPServer):
    """Records each JSON body; answers the queued statuses first, then 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.statuses: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class Handler(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        if status == 200:
            self.server.raw.append(body)
            self.server.received.append(json.loads(body))
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    server = Webhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(WEBHOOK_VARIABLE, server.url)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def marts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ChargebackSettings:
    """A lake holding ROWS, the test seeds, and the settings the marts asset and sensor use."""
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "usage_costs"), costs_frame(ROWS).to_arrow())
    seeds = write_seeds(tmp_path / "seeds")
    # build_marts takes seeds and vars from the environment when the asset passes none
    monkeypatch.setenv("CHARGEBACK_REFERENCE_DIR", str(seeds))
    monkeypatch.delenv("CHARGEBACK_ANOMALY_THRESHOLD", raising=False)
    monkeypatch.delenv("CHARGEBACK_ANOMALY_MIN_INCREASE", raising=False)
    return ChargebackSettings(
        lake=str(lake),
        duckdb_path=str(tmp_path / "marts.duckdb"),
        reference_dir=str(seeds),
        store=str(tmp_path / "store"),
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def build_marts(instance: dg.DagsterInstance, settings: ChargebackSettings) -> None:
    result = dg.materialize([dbt_like_marts], instance=instance, resources={"chargeback": settings})
    assert result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"cost_anomalies_none_flagged", "budget_status_none_over"}


def tick(
    instance: dg.DagsterInstance, settings: ChargebackSettings, cursor: str | None
) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"chargeback": settings}
    )
    result = chargeback_alerts(context)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    return result


def skip_message(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def test_each_finding_is_posted_once(
    webhook: Webhook, marts: ChargebackSettings, instance: dg.DagsterInstance
) -> None:
    build_marts(instance, marts)

    first = tick(instance, marts, None)

    texts = sorted(message["text"] for message in webhook.received)
    assert texts == [
        "[error] Budget exceeded: cost center CC-D has spent 60.00 USD of its 50.00 USD budget"
        " for 2026-03 (120.0%) as of 2026-03-08; linear forecast 232.50 USD.",
        "[warn] Cost anomaly: Cost center CC-A was 13.00 USD on 2026-03-08, +51.7% against its"
        " 7-day mean of 8.57 USD (threshold 20%).",
        "[warn] Cost anomaly: Total spend was 79.50 USD on 2026-03-08, +730.6% against its"
        " 7-day mean of 9.57 USD (threshold 20%).",
    ]
    budget = next(m["chargeback"] for m in webhook.received if "Budget" in m["text"])
    assert budget == {
        "key": "budget_over/2026-03/CC-D/USD",
        "severity": "error",
        "alert": "budget_over",
        "check": "budget_status.budget_status_none_over",
        "month": "2026-03",
        "cost_center": "CC-D",
        "currency": "USD",
        "amount": "50.000000",
        "spent": "60.000000000000",
        "share_spent": "1.200000",
        "forecast_linear": "232.500000000000",
        "as_of_day": "2026-03-08",
    }
    anomaly = next(m["chargeback"] for m in webhook.received if "CC-A" in m["text"])
    assert anomaly["key"] == "cost_anomaly/2026-03-08/cost_center/CC-A/USD"
    assert (anomaly["cost"], anomaly["trailing_7d_mean"]) == ("13.000000000000", "8.571428571428")
    assert "alerts sent: " in skip_message(first)

    # same evaluations: nothing to look at
    second = tick(instance, marts, first.cursor)
    assert skip_message(second) == "no new check evaluations"
    assert second.cursor is None

    # a rebuild evaluates the checks again, with the same findings: no second message
    build_marts(instance, marts)
    third = tick(instance, marts, first.cursor)
    assert skip_message(third) == "alerts sent: nothing new"
    assert third.cursor is not None
    assert load_state(third.cursor).sent == load_state(first.cursor).sent
    assert len(webhook.received) == 3


def test_messages_carry_no_user_columns(
    webhook: Webhook, marts: ChargebackSettings, instance: dg.DagsterInstance
) -> None:
    build_marts(instance, marts)
    tick(instance, marts, None)
    assert len(webhook.raw) == 3
    for body in webhook.raw:
        assert USER_HASH.encode() not in body and b"app-1" not in body
        assert b"user" not in body.lower()


def test_failed_post_is_retried_on_the_next_tick(
    webhook: Webhook, marts: ChargebackSettings, instance: dg.DagsterInstance
) -> None:
    build_marts(instance, marts)
    webhook.statuses = [500]

    first = tick(instance, marts, None)
    assert len(webhook.received) == 2
    assert load_state(first.cursor).evaluations == {}

    second = tick(instance, marts, first.cursor)
    assert len(webhook.received) == 3
    assert load_state(second.cursor).evaluations
    assert len({m["chargeback"]["key"] for m in webhook.received}) == 3


def test_without_a_webhook_nothing_is_read_or_sent(
    marts: ChargebackSettings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEBHOOK_VARIABLE, raising=False)
    result = tick(instance, marts, None)
    assert skip_message(result) == f"{WEBHOOK_VARIABLE} is not set"
    assert result.cursor is None


def test_sensor_is_in_the_code_location() -> None:
    from chargeback_pipeline.definitions import defs

    sensors = {s.name: s for s in defs().get_repository_def().sensor_defs}
    assert sensors["chargeback_alerts"].default_status == dg.DefaultSensorStatus.RUNNING


# --- the pure parts ----------------------------------------------------------------------------


def alert(key: str) -> Alert:
    return Alert(key, "warn", f"text {key}", {"alert": "x"})


def test_a_finding_that_clears_alerts_again_when_it_returns() -> None:
    posted: list[dict[str, Any]] = []
    first = deliver([alert("a"), alert("b")], AlertState(), {"c": 1}, posted.append)
    assert [a.key for a in first.sent] == ["a", "b"]
    # b resolved: forgotten
    second = deliver([alert("a")], first.state, {"c": 2}, posted.append)
    assert second.sent == [] and second.state.sent == frozenset({"a"})
    third = deliver([alert("a"), alert("b")], second.state, {"c": 3}, posted.append)
    assert [a.key for a in third.sent] == ["b"]
    assert [p["chargeback"]["key"] for p in posted] == ["a", "b", "b"]
    assert load_state(dump_state(third.state)) == third.state


def test_unreadable_cursor_starts_afresh() -> None:
    assert load_state("not json") == AlertState()
    assert load_state('{"sent": 3}') == AlertState()


def test_other_failed_checks_alert_by_name_and_count(tmp_path: Path) -> None:
    failure = CheckFailure("chargeback_daily", "chargeback_daily_grain", "error", 3)
    (only,) = alerts_for([failure], tmp_path / "missing.duckdb")
    assert only.payload() == {
        "text": "[error] Check chargeback_daily.chargeback_daily_grain failed on 3 rows.",
        "chargeback": {
            "key": "check/chargeback_daily/chargeback_daily_grain",
            "severity": "error",
            "alert": "check_failed",
            "check": "chargeback_daily.chargeback_daily_grain",
            "failing_rows": 3,
        },
    }
