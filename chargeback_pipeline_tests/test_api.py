"""`chargeback serve-api` started for real on the examples' lake: auth, health, report, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from chargeback_pipeline.api import api_keys, authorised, checked_keys, create_app
from chargeback_pipeline.cli import materialize_hours, materialize_marts
from chargeback_pipeline.devtools.azurite import free_port, stop_process, wait_for_port
from chargeback_pipeline.settings import PROJECT_ROOT, ConfigurationError, load_settings
from chargeback_pipeline_tests.conftest import EXAMPLES, point_env_at
from chargeback_pipeline_tests.defs.test_assets import forward, forward_examples

HOURS = ["2026-11-27-13:00", "2026-11-27-15:00"]
MONTH = "2026-11"
KEY = "test-api-key-0123456789abcdef"
SPEC = PROJECT_ROOT / "docs" / "openapi.yaml"


@dataclass(frozen=True)
class Api:
    """A running `chargeback serve-api` and how to reach it."""

    base_url: str
    key: str
    root: Path

    def get(self, path: str, key: str | None = None, **params: str) -> requests.Response:
        headers = {"x-api-key": self.key if key is None else key}
        return requests.get(f"{self.base_url}{path}", params=params, headers=headers, timeout=30)


def forward_late_call() -> None:
    """One more call, two hours after the examples and for CC-2200: the last hour is 15:00."""
    envelope = json.loads((EXAMPLES / "chat_completion.json").read_text())
    envelope["request_id"] = "api-test-late-call"
    envelope["tags"]["cost-center"] = "CC-2200"
    envelope["timestamp"] = "2026-11-27T15:20:00Z"
    forward(orjson.dumps(envelope))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The examples (+ one later call) materialised into a lake and marts, served on a free port."""
    root = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        point_env_at(root, mp)
        forward_examples()
        forward_late_call()
        assert materialize_hours(HOURS, show_progress=False) == []
        assert materialize_marts()
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "chargeback_pipeline.cli", "serve-api", "--port", str(port)],
            env={**os.environ, "CHARGEBACK_API_KEY": f"old-key-being-rotated-out,{KEY}"},
            cwd=root,
            start_new_session=True,
        )
        try:
            wait_for_port(port, process)
            yield Api(f"http://127.0.0.1:{port}", KEY, root)
        finally:
            stop_process(process)


def marts_rows(sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", ["/api/v1/usage/summary", "/api/v1/chargeback/report", "/api/v1/metrics"]
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"authorization": f"Basic {KEY}"}, {"x-api-key": KEY[:-1]}],
)
def test_every_route_but_health_needs_a_key(api: Api, path: str, headers: dict[str, str]) -> None:
    response = requests.get(f"{api.base_url}{path}", headers=headers, timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.slow
def test_both_header_forms_and_every_rotated_key_are_accepted(api: Api) -> None:
    path = f"{api.base_url}/api/v1/usage/summary"
    for headers in (
        {"x-api-key": KEY},
        {"authorization": f"Bearer {KEY}"},
        {"x-api-key": "old-key-being-rotated-out"},
    ):
        assert requests.get(path, headers=headers, timeout=30).status_code == 200, headers


@pytest.mark.slow
def test_health_is_open_and_reports_the_lake_last_hour(api: Api) -> None:
    response = requests.get(f"{api.base_url}/api/v1/health", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert body["lake"]["last_materialised_hour"] == "2026-11-27-15:00"
    assert body["lake"]["last_materialised_hour_start"] == "2026-11-27T15:00:00Z"
    assert body["marts"]["last_day"] == "2026-11-27"
    assert body["marts"]["built_at"].endswith("Z")


@pytest.mark.slow
def test_report_totals_equal_the_marts_with_money_as_exact_strings(api: Api) -> None:
    response = api.get("/api/v1/chargeback/report", month=MONTH)
    assert response.status_code == 200
    body = response.json(parse_float=lambda text: pytest.fail(f"a float in the JSON: {text}"))
    assert body["month"] == MONTH
    expected = marts_rows(
        "select cost_center, requests, total_tokens, total_cost, currency "
        f"from chargeback_monthly where month = '{MONTH}' order by cost_center"
    )
    got = sorted(body["cost_centers"], key=lambda row: row["cost_center"])
    assert [
        (
            r["cost_center"],
            r["requests"],
            r["total_tokens"],
            Decimal(r["total_cost"]),
            r["currency"],
        )
        for r in got
    ] == expected
    # full precision: the mart's 12 decimals, as text
    assert all(len(r["total_cost"].split(".")[1]) == 12 for r in got)
    assert [r["cost_center"] for r in got] == ["CC-2200", "CC-4100"]
    ((currency, requests_, cost),) = marts_rows(
        "select currency, sum(requests), sum(total_cost) from chargeback_monthly "
        f"where month = '{MONTH}' group by currency"
    )
    (total,) = body["totals"]
    assert (total["currency"], total["requests"], Decimal(total["total_cost"])) == (
        currency,
        requests_,
        cost,
    )
    assert requests_ == 7


@pytest.mark.slow
def test_report_answers_404_for_a_month_without_data_and_400_for_a_bad_month(api: Api) -> None:
    missing = api.get("/api/v1/chargeback/report", month="2019-01")
    assert missing.status_code == 404
    assert "2019-01" in missing.json()["error"]["message"]
    for bad in ("2026-13", "2026-1", "november", "2026-11\n", "٢٠٢٦-11"):
        response = api.get("/api/v1/chargeback/report", month=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "bad_request"


@pytest.mark.slow
def test_summary_groups_and_filters_agree_with_chargeback_daily(api: Api) -> None:
    body = api.get(
        "/api/v1/usage/summary", start="2026-11-27", end="2026-11-28", group_by="model"
    ).json()
    expected = dict(
        marts_rows("select model, sum(total_tokens) from chargeback_daily group by model")
    )
    assert {g["group"]: g["total_tokens"] for g in body["groups"]} == expected
    (total,) = body["totals"]
    (cost,) = marts_rows("select sum(total_cost) from chargeback_daily")[0]
    assert Decimal(total["total_cost"]) == cost and total["requests"] == 7
    # [start, end): the day before holds nothing
    empty = api.get("/api/v1/usage/summary", start="2026-11-26", end="2026-11-27").json()
    assert empty["groups"] == [] and empty["totals"] == []
    center = body["groups"][0]
    one = api.get("/api/v1/usage/summary", cost_center="no-such-center").json()
    assert one["groups"] == [] and center["requests"] > 0
    bad = api.get("/api/v1/usage/summary", group_by="user_hash")
    assert bad.status_code == 400 and "group_by" in bad.json()["error"]["message"]


@pytest.mark.slow
def test_metrics_parse_and_match_the_month(api: Api) -> None:
    response = api.get("/api/v1/metrics", month=MONTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    expected = marts_rows(
        "select cost_center, currency, total_cost, requests from chargeback_monthly "
        f"where month = '{MONTH}'"
    )
    for center, currency, cost, requests_ in expected:
        labels = (("cost_center", center), ("currency", currency), ("month", MONTH))
        assert samples[("chargeback_month_cost", labels)] == pytest.approx(float(cost))
        labels = (("cost_center", center), ("month", MONTH))
        assert samples[("chargeback_month_requests", labels)] == requests_
    hour = samples[("chargeback_last_materialised_hour_timestamp_seconds", ())]
    assert hour == 1795791600  # 2026-11-27T15:00:00Z
    assert samples[("chargeback_up", (("component", "marts"),))] == 1


@pytest.mark.slow
def test_a_build_holding_the_marts_gives_503_with_retry_after_then_recovers(api: Api) -> None:
    # a read-write connection takes the file's lock, as `chargeback materialize` does
    writer = duckdb.connect(str(load_settings().duckdb_path))
    try:
        report = api.get("/api/v1/chargeback/report", month=MONTH)
        assert report.status_code == 503 and report.headers["retry-after"] == "5"
        assert "being rebuilt" in report.json()["error"]["message"]
        metrics = api.get("/api/v1/metrics", month=MONTH)
        assert metrics.status_code == 200
        assert 'chargeback_up{component="marts"} 0.0' in metrics.text
    finally:
        writer.close()
    assert api.get("/api/v1/chargeback/report", month=MONTH).status_code == 200


@pytest.mark.slow
def test_unknown_route_and_method_answer_json_errors(api: Api) -> None:
    head = requests.head(f"{api.base_url}/api/v1/usage/summary", timeout=30)
    assert head.status_code == 401
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    post = requests.post(f"{api.base_url}/api/v1/health", timeout=30)
    assert post.status_code == 405 and "GET" in post.headers["allow"]
    assert post.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.slow
def test_health_is_503_when_the_lake_and_marts_are_missing(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CHARGEBACK_LAKE": str(tmp_path / "lake"),
        "CHARGEBACK_DUCKDB": str(tmp_path / "marts.duckdb"),
        "CHARGEBACK_API_KEY": KEY,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "chargeback_pipeline.cli", "serve-api", "--port", str(port)],
        env=env,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        base = f"http://127.0.0.1:{port}/api/v1"
        health = requests.get(f"{base}/health", timeout=30)
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable" and len(health.json()["problems"]) == 2
        report = requests.get(f"{base}/chargeback/report", headers={"x-api-key": KEY}, timeout=30)
        assert report.status_code == 503
        assert "chargeback materialize" in report.json()["error"]["message"]
        metrics = requests.get(f"{base}/metrics", headers={"x-api-key": KEY}, timeout=30)
        assert metrics.status_code == 200 and 'chargeback_up{component="lake"} 0.0' in metrics.text
    finally:
        stop_process(process)


def test_every_served_route_is_in_the_spec_and_vice_versa() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    app = create_app(load_settings({}), [KEY])
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == documented


def test_keys_are_required_unless_insecure_on_loopback() -> None:
    assert api_keys({"CHARGEBACK_API_KEY": " a-key , ,other "}) == ["a-key", "other"]
    with pytest.raises(ConfigurationError, match="CHARGEBACK_API_KEY is not set"):
        checked_keys({}, "127.0.0.1", insecure_no_auth=False, environment="development")
    assert checked_keys({}, "127.0.0.1", insecure_no_auth=True, environment="development") is None
    with pytest.raises(ConfigurationError, match="loopback"):
        checked_keys({}, "0.0.0.0", insecure_no_auth=True, environment="development")
    with pytest.raises(ConfigurationError, match="32"):
        checked_keys({"CHARGEBACK_API_KEY": "short"}, "::1", False, "production")
    assert authorised(KEY, ["other", KEY]) and not authorised("", [KEY])
    assert not authorised(None, [KEY])


def test_serve_api_refuses_to_start_without_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    from chargeback_pipeline.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CHARGEBACK_API_KEY", raising=False)
        assert main(["serve-api", "--port", str(free_port())]) == 2
    assert "CHARGEBACK_API_KEY is not set" in capsys.readouterr().err


# --- the live server against docs/openapi.yaml (schemathesis) ---------------------------------
# Schemathesis generates valid and invalid queries for every operation (its coverage phase adds
# boundary values and undocumented methods) and runs all its checks on each answer: no 5xx,
# documented status code, content type and headers, body valid against the response schema,
# invalid input rejected, and (re-sending without and with a wrong key) authentication enforced.
# It lives in this module to share the module's one lake, marts and server.

schema = schemathesis.openapi.from_path(SPEC)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_server_conforms_to_the_spec(case: schemathesis.Case, api: Api) -> None:
    case.call_and_validate(base_url=api.base_url, headers={"x-api-key": api.key})
