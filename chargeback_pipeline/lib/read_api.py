"""Queries and JSON/Prometheus shapes of the read API (`chargeback serve-api`), without HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from deltalake import DeltaTable
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from chargeback_pipeline.lib.delta import table_exists, table_uri
from chargeback_pipeline.lib.hours import hour_start

GROUP_BY = ("cost_center", "subscription_id", "model", "deployment_type")
TOKEN_KINDS = ("prompt", "cached", "completion", "total")
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
"""Whole-string patterns (`fullmatch`): ASCII digits only, no trailing newline."""

Json = dict[str, Any]


class BadRequest(ValueError):
    """A query parameter the API cannot use; the message names it and the expected form."""


class MartsUnavailable(RuntimeError):
    """The marts file is missing, or locked by a build; `retry` says whether waiting helps."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


def parse_day(text: str | None, name: str) -> date | None:
    """An optional `YYYY-MM-DD` query parameter."""
    if text is None:
        return None
    try:
        if DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise BadRequest(f"{name} must be a date YYYY-MM-DD, got {text!r}")


def parse_month(text: str | None, name: str = "month") -> str | None:
    """An optional `YYYY-MM` query parameter."""
    if text is None or MONTH.fullmatch(text):
        return text
    raise BadRequest(f"{name} must be YYYY-MM (e.g. 2026-11), got {text!r}")


def parse_group_by(text: str | None) -> str:
    """The summary's grouping column (default cost_center); only the documented ones."""
    if text is None:
        return GROUP_BY[0]
    if text in GROUP_BY:
        return text
    raise BadRequest(f"group_by must be one of {', '.join(GROUP_BY)}, got {text!r}")


def money(value: Decimal | None) -> str | None:
    """Exact decimal text at the mart's scale (never float, never exponent); None if unpriced."""
    return None if value is None else format(value, "f")


def iso(moment: datetime | None) -> str | None:
    """An instant as ISO-8601 UTC with a `Z`."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def connect_marts(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection; a build holding the file's lock is a retryable unavailability."""
    if not path.is_file():
        raise MartsUnavailable("no marts file: run `chargeback materialize` or `chargeback demo`")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:
        raise MartsUnavailable(f"the marts are being rebuilt ({error})", retry=True) from None


def _records(relation: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    columns = [column[0] for column in relation.description or []]
    return [dict(zip(columns, row, strict=True)) for row in relation.fetchall()]


USAGE_COUNTS = (
    "requests",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "total_tokens",
    "unpriced_requests",
)


def usage_summary(
    con: duckdb.DuckDBPyConnection,
    start: date | None,
    end: date | None,
    group_by: str,
    cost_center: str | None = None,
) -> Json:
    """`chargeback_daily` over days [start, end) per group and currency, with currency totals."""
    if group_by not in GROUP_BY:
        raise BadRequest(f"group_by must be one of {', '.join(GROUP_BY)}")
    counts = ", ".join(
        f"cast(coalesce(sum({name}), 0) as bigint) as {name}" for name in USAGE_COUNTS
    )
    # group_by is one of GROUP_BY, so formatting it in is safe; values are bound. The second
    # grouping set gives the totals, summed exactly by DuckDB (money of two currencies never adds).
    sql = f"""
        select grouping({group_by}) = 1 as is_total, {group_by} as "group", currency,
            {counts}, sum(total_cost) as total_cost
        from chargeback_daily
        where ($start is null or day >= $start) and ($end is null or day < $end)
            and ($cost_center is null or cost_center = $cost_center)
        group by grouping sets (({group_by}, currency), (currency))
        order by total_cost desc nulls last, "group" nulls last, currency nulls last
    """
    params = {"start": start, "end": end, "cost_center": cost_center}
    rows = [
        {**row, "total_cost": money(row["total_cost"])}
        for row in _records(con.execute(sql, params))
    ]
    return {
        "start": None if start is None else start.isoformat(),
        "end": None if end is None else end.isoformat(),
        "group_by": group_by,
        "cost_center": cost_center,
        "groups": [_without(row, "is_total") for row in rows if not row["is_total"]],
        "totals": sorted(
            (_without(row, "is_total", "group") for row in rows if row["is_total"]),
            key=_by_currency,
        ),
    }


def _without(row: Mapping[str, Any], *keys: str) -> Json:
    return {key: value for key, value in row.items() if key not in keys}


def _by_currency(row: Mapping[str, Any]) -> tuple[bool, str]:
    return row["currency"] is None, row["currency"] or ""


REPORT_FIELDS = ("cost_center", "currency", *USAGE_COUNTS, "total_cost")
MONTH_SCHEMA: dict[str, pl.DataType] = {
    "cost_center": pl.String(),
    "currency": pl.String(),
    **{name: pl.Int64() for name in USAGE_COUNTS},
    "total_cost": pl.Decimal(38, 12),
}
"""The `chargeback_monthly` columns the API reads (an empty month has these too)."""


def conform_month(frame: pl.DataFrame) -> pl.DataFrame:
    """The API's columns of `chargeback_monthly`, counts without nulls."""
    return frame.select(
        pl.col(name).cast(dtype).fill_null(0) if dtype == pl.Int64() else pl.col(name).cast(dtype)
        for name, dtype in MONTH_SCHEMA.items()
    )


def chargeback_report(month: str, frame: pl.DataFrame) -> Json:
    """The month's `chargeback_monthly` rows (from report.monthly_chargeback) and totals."""
    rows = conform_month(frame)
    totals = (
        rows.group_by("currency")
        .agg(
            pl.col(*USAGE_COUNTS).sum(),
            # polars sums an all-null column to 0; an all-unpriced currency has no cost
            pl.when(pl.col("total_cost").count() > 0).then(pl.col("total_cost").sum()),
        )
        .sort(pl.col("currency").is_null(), "currency")
    )
    return {"month": month, "cost_centers": _json_rows(rows), "totals": _json_rows(totals)}


def _json_rows(frame: pl.DataFrame) -> list[Json]:
    return [{**row, "total_cost": money(row["total_cost"])} for row in frame.iter_rows(named=True)]


@dataclass(frozen=True)
class LakeStatus:
    """What the lake says about freshness: the newest hour with usage and the last commit."""

    available: bool
    last_hour: str | None = None
    last_commit: datetime | None = None
    problem: str | None = None


def lake_status(lake: str, storage_options: dict[str, str] | None = None) -> LakeStatus:
    """Read `usage_events`' partition list and last commit from the Delta log (no data files)."""
    uri = table_uri(lake, "usage_events")
    if not table_exists(uri, storage_options):
        return LakeStatus(False, problem="no usage_events table in the lake")
    table = DeltaTable(uri, storage_options=storage_options)
    hours = [p["hour"] for p in table.partitions() if p.get("hour")]
    history = table.history(1)
    stamp = history[0].get("timestamp") if history else None
    commit = None if stamp is None else datetime.fromtimestamp(int(stamp) / 1000, UTC)
    return LakeStatus(True, max(hours) if hours else None, commit)


@dataclass(frozen=True)
class MartsStatus:
    """When the marts file was last written and the newest day it holds."""

    available: bool
    built_at: datetime | None = None
    last_day: date | None = None
    problem: str | None = None


def marts_status(path: Path) -> MartsStatus:
    """The marts file's modification time (the end of its last build) and max(day)."""
    try:
        with connect_marts(path) as con:
            row = con.execute("select max(day) from chargeback_daily").fetchone()
    except MartsUnavailable as error:
        return MartsStatus(False, problem=str(error))
    except duckdb.CatalogException:
        return MartsStatus(False, problem="the marts file has no chargeback_daily table")
    built = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return MartsStatus(True, built, row[0] if row else None)


def health(lake: LakeStatus, marts: MartsStatus) -> tuple[int, Json]:
    """The health body and its status code: 200 when both are readable, else 503."""
    problems = [] if lake.available else [lake.problem or "lake unavailable"]
    problems += [] if marts.available else [marts.problem or "marts unavailable"]
    return (200 if not problems else 503), {
        "status": "ok" if not problems else "unavailable",
        "lake": {
            "available": lake.available,
            "last_materialised_hour": lake.last_hour,
            "last_materialised_hour_start": iso(hour_start(lake.last_hour))
            if lake.last_hour
            else None,
            "last_commit_at": iso(lake.last_commit),
        },
        "marts": {
            "available": marts.available,
            "built_at": iso(marts.built_at),
            "last_day": None if marts.last_day is None else marts.last_day.isoformat(),
        },
        "problems": problems,
    }


def month_rows(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    """`chargeback_monthly` of one month, in the API's columns."""
    return conform_month(
        con.execute("select * from chargeback_monthly where month = ?", [month]).pl()
    )


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything /metrics exposes, read once per scrape."""

    month: str
    rows: pl.DataFrame
    lake: LakeStatus
    marts: MartsStatus


class _Collector:
    """A one-scrape collector: prometheus_client renders whatever `collect` yields."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return iter(metric_families(self.snapshot))


def metric_families(snapshot: MetricsSnapshot) -> list[Metric]:
    """Gauges of the month so far per cost center, and the lake's and marts' freshness."""
    month, rows = snapshot.month, snapshot.rows
    cost = GaugeMetricFamily(
        "chargeback_month_cost",
        "Priced cost of the month so far (float here; exact decimals in the JSON API)",
        labels=["month", "cost_center", "currency"],
    )
    for row in rows.filter(pl.col("total_cost").is_not_null()).iter_rows(named=True):
        cost.add_metric(
            [month, row["cost_center"], row["currency"] or ""], float(row["total_cost"])
        )
    per_center = rows.group_by("cost_center").agg(pl.col(*USAGE_COUNTS).sum())
    requests = GaugeMetricFamily(
        "chargeback_month_requests", "Requests of the month so far", labels=["month", "cost_center"]
    )
    unpriced = GaugeMetricFamily(
        "chargeback_month_unpriced_requests",
        "Requests of the month so far that no price applied to",
        labels=["month", "cost_center"],
    )
    tokens = GaugeMetricFamily(
        "chargeback_month_tokens",
        "Tokens of the month so far by kind (cached is part of prompt)",
        labels=["month", "cost_center", "kind"],
    )
    for row in per_center.sort("cost_center").iter_rows(named=True):
        requests.add_metric([month, row["cost_center"]], row["requests"])
        unpriced.add_metric([month, row["cost_center"]], row["unpriced_requests"])
        for kind in TOKEN_KINDS:
            tokens.add_metric([month, row["cost_center"], kind], row[f"{kind}_tokens"])
    families: list[Metric] = [cost, requests, unpriced, tokens]
    families += _freshness(snapshot.lake, snapshot.marts)
    return families


def _freshness(lake: LakeStatus, marts: MartsStatus) -> list[Metric]:
    up = GaugeMetricFamily(
        "chargeback_up", "Whether the lake and the marts are readable", labels=["component"]
    )
    up.add_metric(["lake"], 1 if lake.available else 0)
    up.add_metric(["marts"], 1 if marts.available else 0)
    families: list[Metric] = [up]
    if lake.last_hour:
        families.append(
            GaugeMetricFamily(
                "chargeback_last_materialised_hour_timestamp_seconds",
                "Start of the newest hour with usage in the lake's usage_events",
                value=hour_start(lake.last_hour).timestamp(),
            )
        )
    if marts.built_at:
        families.append(
            GaugeMetricFamily(
                "chargeback_marts_built_timestamp_seconds",
                "When the marts file was last written",
                value=marts.built_at.timestamp(),
            )
        )
    return families


def render_metrics(snapshot: MetricsSnapshot) -> bytes:
    """Prometheus text exposition format 0.0.4."""
    return generate_latest(_Collector(snapshot))
