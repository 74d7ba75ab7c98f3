"""The monthly chargeback read from the marts file, rendered as a table, CSV, JSON or a
self-contained HTML page with charts; the month's FOCUS dataset exported as CSV and Parquet."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import polars as pl

REPORT_COLUMNS = ["cost_center", "requests", "total_tokens", "total_cost", "currency"]


def monthly_chargeback(duckdb_path: Path, month: str | None) -> tuple[str, pl.DataFrame]:
    """Rows of `chargeback_monthly` for a month (default: the latest), most expensive first."""
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        if month is None:
            latest = con.execute("select max(month) from chargeback_monthly").fetchone()
            month = str(latest[0]) if latest and latest[0] else ""
        frame = con.execute(
            "select * from chargeback_monthly where month = ? "
            "order by total_cost desc nulls last, cost_center",
            [month],
        ).pl()
    return month, frame


@dataclass(frozen=True)
class MonthFrames:
    """One month of the marts: `chargeback_monthly`, `model_mix` and `chargeback_daily` rows."""

    month: str
    monthly: pl.DataFrame
    mix: pl.DataFrame
    daily: pl.DataFrame


def month_frames(duckdb_path: Path, month: str | None) -> MonthFrames:
    """The month's rows of the three marts the HTML report and the charts are drawn from."""
    month, monthly = monthly_chargeback(duckdb_path, month)
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        mix = con.execute("select * from model_mix where month = ?", [month]).pl()
        daily = con.execute(
            "select day, cost_center, model, requests, total_tokens, total_cost, currency"
            " from chargeback_daily where strftime(day, '%Y-%m') = ? order by day, cost_center",
            [month],
        ).pl()
    return MonthFrames(month, monthly, mix, daily)


def html_report(frames: MonthFrames, generated_at: datetime | None = None) -> str:
    """The month as one self-contained HTML page (tables, charts, unallocated and unpriced)."""
    from chargeback_pipeline.lib.charts import daily_cost_chart, model_mix_chart
    from chargeback_pipeline.lib.report_html import ReportInputs, build_report_html

    return build_report_html(
        ReportInputs(
            month=frames.month,
            monthly=frames.monthly,
            mix=frames.mix,
            daily_chart=daily_cost_chart(frames.daily),
            mix_chart=model_mix_chart(frames.mix),
            generated_at=generated_at or datetime.now(UTC),
        )
    )


CHART_MARTS = ("chargeback_daily", "model_mix")


def mart_charts(duckdb_path: Path, marts: set[str]) -> dict[str, bytes]:
    """PNG charts of the latest month for the chart marts among `marts` (built in this file)."""
    from chargeback_pipeline.lib.charts import daily_cost_chart, model_mix_chart

    queries = {
        "chargeback_daily": (
            "select day, cost_center, total_cost, currency from chargeback_daily"
            " where strftime(day, '%Y-%m') = ?",
            daily_cost_chart,
        ),
        "model_mix": (
            "select model, total_cost, currency from model_mix where month = ?",
            model_mix_chart,
        ),
    }
    wanted = {name: queries[name] for name in CHART_MARTS if name in marts}
    if not wanted:
        return {}
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        # model_mix is built from chargeback_daily, so the daily mart is there whenever either is
        found = con.execute("select max(strftime(day, '%Y-%m')) from chargeback_daily").fetchone()
        month = str(found[0]) if found and found[0] else ""
        return {
            name: chart(con.execute(sql, [month]).pl()) for name, (sql, chart) in wanted.items()
        }


def default_reports_dir(duckdb_path: Path) -> Path:
    """`reports/` beside the marts file (`.chargeback/reports` by default): always local."""
    return duckdb_path.parent / "reports"


def write_html_report(duckdb_path: Path, month: str | None, out_dir: Path) -> Path:
    """Write `chargeback-YYYY-MM.html` for a month (default: the latest) into out_dir."""
    if month is not None and not _MONTH.match(month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    frames = month_frames(duckdb_path, month)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"chargeback-{frames.month or 'empty'}.html"
    path.write_text(html_report(frames), encoding="utf-8")
    return path


def _money(value: object) -> str:
    return "unpriced" if value is None else f"{Decimal(str(value)):,.6f}"


def render(frame: pl.DataFrame, fmt: str, title: str) -> str:
    """The report in the requested format; money keeps full precision in csv and json."""
    columns = [c for c in REPORT_COLUMNS if c in frame.columns] + [
        c for c in ("unpriced_requests",) if c in frame.columns
    ]
    rows = frame.select(columns)
    if fmt == "csv":
        return rows.with_columns(pl.col("total_cost").cast(pl.String)).write_csv().rstrip()
    if fmt == "json":
        records = rows.with_columns(pl.col("total_cost").cast(pl.String)).to_dicts()
        return orjson.dumps(records, option=orjson.OPT_INDENT_2).decode()
    return _table(rows, title)


def _table(rows: pl.DataFrame, title: str) -> str:
    header = ["cost center", "requests", "tokens", "cost", "currency"]
    body = [
        [
            str(r["cost_center"]),
            f"{r['requests']:,}",
            f"{r['total_tokens']:,}",
            _money(r["total_cost"]),
            str(r["currency"] or ""),
        ]
        for r in rows.iter_rows(named=True)
    ]
    total = sum(
        (
            Decimal(str(r["total_cost"]))
            for r in rows.iter_rows(named=True)
            if r["total_cost"] is not None
        ),
        Decimal(0),
    )
    body.append(
        [
            "TOTAL",
            f"{rows['requests'].sum():,}",
            f"{rows['total_tokens'].sum():,}",
            f"{total:,.6f}",
            "",
        ]
    )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 or i == 4 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    lines = [
        title,
        rule,
        fmt_line(header),
        rule,
        *[fmt_line(b) for b in body[:-1]],
        rule,
        fmt_line(body[-1]),
    ]
    return "\n".join(lines)


FOCUS_TABLE = "focus_costs"
FOCUS_TIMESTAMPS = (
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BillingPeriodStart",
    "BillingPeriodEnd",
)
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def export_focus(duckdb_path: Path, month: str | None, out_dir: Path) -> list[Path]:
    """Write the month's FOCUS rows (default: the latest month) as CSV and Parquet.

    Parquet keeps the types (DECIMAL(38,12) money, UTC timestamps); the CSV writes money as exact
    decimal text and times as ISO-8601 UTC (`2026-11-26T00:00:00Z`). Returns [csv, parquet].
    """
    if month is not None and not _MONTH.match(month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        # Session settings only: timestamps render in UTC whatever the machine's zone.
        con.execute("set TimeZone = 'UTC'")
        if month is None:
            latest = con.execute(
                f"select strftime(max(BillingPeriodStart), '%Y-%m') from {FOCUS_TABLE}"
            ).fetchone()
            month = str(latest[0]) if latest and latest[0] else ""
        rows = (
            # Tags as JSON text: Parquet readers would otherwise see opaque bytes
            f"select * replace (cast(Tags as varchar) as Tags) from {FOCUS_TABLE}"
            f" where strftime(BillingPeriodStart, '%Y-%m') = {sql_string(month)}"
            " order by ChargePeriodStart, x_CostCenter, SubAccountId, x_Model, x_DeploymentType,"
            " x_Operation, BillingCurrency"
        )
        iso = ", ".join(
            f"strftime({column}, '%Y-%m-%dT%H:%M:%SZ') as {column}" for column in FOCUS_TIMESTAMPS
        )
        stem = out_dir / f"focus_costs_{month or 'empty'}"
        csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
        con.execute(
            f"copy (select * replace ({iso}) from ({rows})) to {sql_string(str(csv_path))}"
            " (format csv, header)"
        )
        con.execute(
            f"copy ({rows}) to {sql_string(str(parquet_path))} (format parquet, compression zstd)"
        )
    return [csv_path, parquet_path]


def sql_string(text: str) -> str:
    """A single-quoted SQL literal (COPY takes no bound parameters for its file name)."""
    return "'" + text.replace("'", "''") + "'"
