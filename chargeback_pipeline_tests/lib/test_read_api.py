"""The read API's pure parts: parameter parsing, exact money, summaries and metrics text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chargeback_pipeline.lib import read_api
from chargeback_pipeline.lib.read_api import BadRequest

DAILY = """
create table chargeback_daily as select * from (values
    (date '2026-11-01', 'CC-1', 'sub-a', 'gpt-4o', 'GlobalStandard', 2, 100, 10, 50, 150,
        cast(0.000000000001 as decimal(38, 12)), 'USD', 0),
    (date '2026-11-02', 'CC-1', 'sub-a', 'gpt-4o', 'GlobalStandard', 3, 200, 0, 80, 280,
        cast(12345678901234567890.123456789012 as decimal(38, 12)), 'USD', 1),
    (date '2026-11-02', 'CC-2', 'sub-b', 'o3', 'Standard', 1, 5, 0, 5, 10,
        cast(1.5 as decimal(38, 12)), 'EUR', 0),
    (date '2026-11-03', 'CC-3', 'sub-c', 'mystery', 'Standard', 4, 9, 0, 9, 18,
        cast(null as decimal(38, 12)), null, 4)
) t(day, cost_center, subscription_id, model, deployment_type, requests, prompt_tokens,
    cached_tokens, completion_tokens, total_tokens, total_cost, currency, unpriced_requests)
"""


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(DAILY)
    return connection


@pytest.mark.parametrize("text", ["2026-11-1", "2026-02-30", "20261101", "2026-11-01\n", "x"])
def test_days_must_be_real_iso_dates(text: str) -> None:
    with pytest.raises(BadRequest, match="start must be a date YYYY-MM-DD"):
        read_api.parse_day(text, "start")


@pytest.mark.parametrize("text", ["2026-00", "2026-13", "26-11", "2026-11\n", "٢٠٢٦-11"])
def test_months_must_be_yyyy_mm(text: str) -> None:
    with pytest.raises(BadRequest, match="month must be YYYY-MM"):
        read_api.parse_month(text)


def test_valid_parameters_and_defaults_parse() -> None:
    assert read_api.parse_day("2026-11-30", "end") == date(2026, 11, 30)
    assert read_api.parse_day(None, "end") is None
    assert read_api.parse_month("2026-12") == "2026-12"
    assert read_api.parse_group_by(None) == "cost_center"
    assert read_api.parse_group_by("model") == "model"
    with pytest.raises(BadRequest, match="group_by must be one of"):
        read_api.parse_group_by("user_hash; drop table x")


def test_money_is_plain_decimal_text_at_full_scale() -> None:
    assert read_api.money(Decimal("0E-12")) == "0.000000000000"
    assert read_api.money(Decimal("1E-12")) == "0.000000000001"
    assert read_api.money(None) is None


def test_summary_totals_are_exact_per_currency_and_unpriced_stays_null(con) -> None:
    body = read_api.usage_summary(con, None, None, "cost_center")
    totals = {t["currency"]: t for t in body["totals"]}
    # 20 integer digits + 12 decimals: more than a float or a default Decimal context holds
    assert totals["USD"]["total_cost"] == "12345678901234567890.123456789013"
    assert totals["USD"]["requests"] == 5 and totals["USD"]["unpriced_requests"] == 1
    assert totals["EUR"]["total_cost"] == "1.500000000000"
    assert totals[None]["total_cost"] is None and totals[None]["unpriced_requests"] == 4
    assert [t["currency"] for t in body["totals"]] == ["EUR", "USD", None]
    assert [g["group"] for g in body["groups"]] == ["CC-1", "CC-2", "CC-3"]


def test_summary_range_is_half_open_and_filters_by_cost_center(con) -> None:
    day_two = read_api.usage_summary(con, date(2026, 11, 2), date(2026, 11, 3), "model")
    assert {g["group"]: g["requests"] for g in day_two["groups"]} == {"gpt-4o": 3, "o3": 1}
    assert day_two["start"] == "2026-11-02" and day_two["end"] == "2026-11-03"
    one = read_api.usage_summary(con, None, None, "deployment_type", cost_center="CC-2")
    assert [(g["group"], g["total_cost"]) for g in one["groups"]] == [
        ("Standard", "1.500000000000")
    ]
    backwards = read_api.usage_summary(con, date(2026, 11, 3), date(2026, 11, 1), "model")
    assert backwards["groups"] == [] and backwards["totals"] == []


def test_report_lines_and_totals_from_monthly_rows() -> None:
    frame = pl.DataFrame(
        {
            "month": ["2026-11"] * 3,
            "cost_center": ["CC-1", "CC-2", "CC-3"],
            "requests": [5, 1, 4],
            "total_tokens": [430, 10, 18],
            "total_cost": [Decimal("2.000000000001"), Decimal("3"), None],
            "currency": ["USD", "USD", None],
            "unpriced_requests": [1, 0, 4],
            "prompt_tokens": [300, 5, 9],
            "cached_tokens": [10, 0, 0],
            "completion_tokens": [130, 5, 9],
        },
        schema_overrides={"total_cost": pl.Decimal(38, 12)},
    )
    body = read_api.chargeback_report("2026-11", frame)
    assert [line["total_cost"] for line in body["cost_centers"]] == [
        "2.000000000001",
        "3.000000000000",
        None,
    ]
    usd, unpriced = body["totals"]
    assert (usd["currency"], usd["requests"], usd["total_cost"]) == ("USD", 6, "5.000000000001")
    assert (unpriced["currency"], unpriced["total_cost"], unpriced["unpriced_requests"]) == (
        None,
        None,
        4,
    )


def test_health_is_503_with_the_reasons_when_a_part_is_missing(tmp_path: Path) -> None:
    lake = read_api.lake_status(str(tmp_path / "lake"))
    marts = read_api.marts_status(tmp_path / "marts.duckdb")
    status, body = read_api.health(lake, marts)
    assert status == 503 and body["status"] == "unavailable"
    assert body["problems"] == [
        "no usage_events table in the lake",
        "no marts file: run `chargeback materialize` or `chargeback demo`",
    ]
    fresh = read_api.LakeStatus(
        True, "2026-11-27-15:00", datetime(2026, 11, 27, 15, 58, tzinfo=UTC)
    )
    built = read_api.MartsStatus(
        True, datetime(2026, 11, 27, 16, 0, 5, tzinfo=UTC), date(2026, 11, 27)
    )
    status, body = read_api.health(fresh, built)
    assert status == 200 and body["problems"] == []
    assert body["lake"]["last_materialised_hour_start"] == "2026-11-27T15:00:00Z"
    assert body["marts"] == {
        "available": True,
        "built_at": "2026-11-27T16:00:05Z",
        "last_day": "2026-11-27",
    }


def test_marts_without_the_daily_table_are_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "marts.duckdb"
    duckdb.connect(str(path)).close()
    assert read_api.marts_status(path).problem == "the marts file has no chargeback_daily table"


def test_metrics_render_the_month_and_freshness_in_prometheus_text(con) -> None:
    con.execute(
        "create table chargeback_monthly as select strftime(day, '%Y-%m') as month, cost_center,"
        " currency, sum(requests) as requests, sum(prompt_tokens) as prompt_tokens,"
        " sum(cached_tokens) as cached_tokens, sum(completion_tokens) as completion_tokens,"
        " sum(total_tokens) as total_tokens, sum(unpriced_requests) as unpriced_requests,"
        " sum(total_cost) as total_cost from chargeback_daily group by all"
    )
    snapshot = read_api.MetricsSnapshot(
        "2026-11",
        read_api.month_rows(con, "2026-11"),
        read_api.LakeStatus(True, "2026-11-27-15:00"),
        read_api.MartsStatus(False, problem="rebuilding"),
    )
    text = read_api.render_metrics(snapshot).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    month = ("month", "2026-11")
    assert (
        samples[("chargeback_month_cost", (("cost_center", "CC-2"), ("currency", "EUR"), month))]
        == 1.5
    )
    # an unpriced-only cost center has requests and tokens but no cost sample
    assert not any(
        name == "chargeback_month_cost" and ("cost_center", "CC-3") in labels
        for name, labels in samples
    )
    assert samples[("chargeback_month_unpriced_requests", (("cost_center", "CC-3"), month))] == 4
    cached = (("cost_center", "CC-1"), ("kind", "cached"), month)
    assert samples[("chargeback_month_tokens", cached)] == 10
    assert samples[("chargeback_last_materialised_hour_timestamp_seconds", ())] == 1795791600
    assert samples[("chargeback_up", (("component", "marts"),))] == 0
    assert "chargeback_marts_built_timestamp_seconds" not in text
