"""Build the DuckDB marts file from dbt_like_sql/ over the lake's Delta tables and the seeds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb
import polars as pl

from chargeback_pipeline.lib import tables
from chargeback_pipeline.lib.delta import table_exists, table_uri
from chargeback_pipeline.lib.lake_views import (
    LAKE_TABLES,
    ExtensionUnavailable,
    attach_lake_views,
    view_name,
)
from chargeback_pipeline.lib.marts_lake import (
    FullRebuildNeeded,
    PinnedTable,
    pin_table,
    read_pinned,
)
from chargeback_pipeline.lib.marts_refresh import (
    Mode,
    RefreshPlan,
    SourceKey,
    full,
    plan_refresh,
    source_name,
    source_versions,
)
from chargeback_pipeline.lib.marts_state import (
    BuildState,
    models_fingerprint,
    read_state,
    write_state,
)
from chargeback_pipeline.lib.reference import (
    ReferenceDataError,
    load_cost_centers,
    load_deployments,
    load_price_book,
    read_csv_strict,
)
from chargeback_pipeline.lib.sql_models import (
    DayWindowError,
    ModelRun,
    ModelTestResult,
    SqlModel,
    load_model_docs,
    load_models,
    order_models,
    run_model_tests,
    run_models,
)

LAKE_SOURCES = {
    ("lake", "usage_costs"): tables.USAGE_COSTS,
    ("lake", "quarantined_envelopes"): tables.QUARANTINED_ENVELOPES,
    ("lake", "usage_events"): tables.USAGE_EVENTS,
}

BUDGETS = "budgets.csv"
BUDGET_COLUMNS = ["cost_center", "month", "amount", "currency"]
BUDGET_SCHEMA: dict[str, pl.DataType] = {
    "cost_center": pl.String(),
    "month": pl.String(),
    "amount": tables.PRICE,
    "currency": pl.String(),
}


def load_budgets(path: Path) -> pl.DataFrame:
    """Monthly budgets per cost center; optional, so a missing file is an empty table."""
    if not path.is_file():
        return pl.DataFrame(schema=BUDGET_SCHEMA)
    frame = read_csv_strict(path, BUDGET_COLUMNS)
    rules = [
        ("cost_center", pl.col("cost_center").is_not_null(), "value is required"),
        ("month", pl.col("month").str.contains(r"^\d{4}-(0[1-9]|1[0-2])$"), "not YYYY-MM"),
        (
            "amount",
            pl.col("amount").str.contains(r"^\d{1,20}(\.\d{1,6})?$"),
            "not a non-negative decimal with at most 6 decimals",
        ),
        ("currency", pl.col("currency").str.contains(r"^[A-Z]{3}$"), "not an ISO 4217 code"),
    ]
    for column, valid, message in rules:
        bad = frame.filter(valid.fill_null(False).not_())
        if bad.height:
            raise ReferenceDataError(path.name, message, int(bad["_row"][0]), column)
    repeated = frame.filter(pl.struct("cost_center", "month", "currency").is_duplicated())
    if repeated.height:
        raise ReferenceDataError(
            path.name, "cost_center, month and currency repeat", int(repeated["_row"][-1]), "month"
        )
    return frame.select(pl.col(name).cast(dtype) for name, dtype in BUDGET_SCHEMA.items())


SEEDS: dict[str, Callable[[Path], pl.DataFrame]] = {
    "price_book": load_price_book,
    "deployments": load_deployments,
    "cost_centers": load_cost_centers,
    "budgets": load_budgets,
}
"""`{{ source('seeds', name) }}`: `name`.csv of the reference directory, typed and checked."""

MART_VARIABLES: dict[str, tuple[str, Decimal | str]] = {
    "anomaly_threshold": ("CHARGEBACK_ANOMALY_THRESHOLD", Decimal("0.20")),
    "anomaly_min_increase": ("CHARGEBACK_ANOMALY_MIN_INCREASE", Decimal("1.00")),
    "billing_account_id": ("CHARGEBACK_FOCUS_BILLING_ACCOUNT_ID", "unconfigured"),
    "billing_account_name": ("CHARGEBACK_FOCUS_BILLING_ACCOUNT_NAME", ""),
}
"""`{{ var(name) }}` -> (environment variable, default); decimal ones must be non-negative."""


def mart_variables(env: Mapping[str, str]) -> dict[str, object]:
    """The models' vars from the environment, defaults where unset."""
    values: dict[str, object] = {}
    for name, (variable, default) in MART_VARIABLES.items():
        text = (env.get(variable) or "").strip()
        if isinstance(default, str):
            values[name] = text or default
            continue
        try:
            value = Decimal(text) if text else default
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite() or value < 0:
            raise ValueError(f"{variable}={text!r} is not a non-negative decimal number")
        values[name] = value
    return values


def seed_paths(reference_dir: Path, keys: Collection[tuple[str, str]]) -> list[Path]:
    """The files behind the seeds the models read."""
    return [
        reference_dir / f"{name}.csv" for kind, name in keys if kind == "seeds" and name in SEEDS
    ]


def seed_sources(
    reference_dir: Path, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], pl.DataFrame]:
    """The seeds the models read (keys `("seeds", name)`), without the loaders' row numbers."""
    return {
        key: SEEDS[key[1]](reference_dir / f"{key[1]}.csv").drop("_row", strict=False)
        for key in keys
        if key[0] == "seeds" and key[1] in SEEDS
    }


@dataclass(frozen=True)
class MartsBuild:
    """Every model with its row count and what the build did to it, every models.yml test
    result, the lake views, and the build's mode (full, incremental, unchanged) with its reason."""

    runs: list[ModelRun]
    tests: list[ModelTestResult]
    lake_views: list[str] = field(default_factory=list)
    lake_views_skipped: str | None = None
    mode: Mode = "full"
    reason: str = ""
    days: tuple[date, ...] = ()


def build_marts(
    sql_dir: Path,
    lake: str,
    duckdb_path: Path,
    storage_options: dict[str, str] | None = None,
    reference_dir: Path | None = None,
    variables: Mapping[str, object] | None = None,
    full_refresh: bool = False,
) -> MartsBuild:
    """Bring the marts up to date with the lake in one transaction, then run their tests; a
    failure keeps the old file.

    Only the days whose lake partitions changed since the recorded build are replaced in the
    incremental_by_day models (the rest rebuilt from the file); anything else is a full rebuild
    (ADR 0005). Seeds come from `reference_dir` (default: CHARGEBACK_REFERENCE_DIR, else
    sql_dir/seeds) and vars from `variables` (default: `mart_variables` of the environment).
    """
    models = order_models(load_models(sql_dir))
    used = {source for model in models for source in model.sources}
    pinned = {
        key: pin_table(table_uri(lake, key[1]), storage_options)
        for key in sorted(used)
        if key in LAKE_SOURCES
    }
    reference = reference_dir or Path(
        os.environ.get("CHARGEBACK_REFERENCE_DIR") or sql_dir / "seeds"
    )
    seeds = seed_sources(reference, used)
    values = mart_variables(os.environ) if variables is None else variables
    docs_path = sql_dir / "models.yml"
    docs = load_model_docs(docs_path)
    schemas = {source_name(key): LAKE_SOURCES[key] for key in pinned}
    fingerprint = models_fingerprint(
        models, docs_path, seed_paths(reference, used), values, schemas
    )
    current = BuildState(fingerprint, source_versions(pinned))
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with connect_for_writing(duckdb_path) as con:
        plan = plan_refresh(
            models,
            read_state(con),
            current,
            pinned,
            table_names(con),
            storage_options,
            full_refresh,
        )
        runs, plan = run_plan(con, models, plan, pinned, seeds, values, current)
        results = [result for model in models for result in run_model_tests(con, model.name, docs)]
        views, skipped = _attach_views(con, lake, storage_options, plan.mode == "full")
    return MartsBuild(
        runs, results, views, skipped, plan.mode, plan.reason, tuple(sorted(plan.days))
    )


def run_plan(
    con: duckdb.DuckDBPyConnection,
    models: list[SqlModel],
    plan: RefreshPlan,
    pinned: Mapping[SourceKey, PinnedTable],
    seeds: Mapping[SourceKey, pl.DataFrame],
    values: Mapping[str, object],
    state: BuildState,
) -> tuple[list[ModelRun], RefreshPlan]:
    """Run the plan in one transaction that also records `state`; a refresh that turns out not
    to be exact by day rolls back and becomes a full rebuild."""

    def record(con: duckdb.DuckDBPyConnection) -> None:
        write_state(con, state, datetime.now(UTC))

    if plan.mode != "full":
        # unchanged: nothing is read, the sources only have to exist for the models to compile
        days = plan.days if plan.mode == "incremental" else frozenset()
        try:
            lake = {
                key: read_pinned(table, LAKE_SOURCES[key], days) for key, table in pinned.items()
            }
            return run_models(con, models, {**seeds, **lake}, values, plan.refresh, record), plan
        except FullRebuildNeeded as error:
            # e.g. a table written without hour partitions: its days cannot be read alone
            plan = full(str(error))
        except DayWindowError as error:
            plan = full(f"a refresh by day would not be exact: {error}")
    lake = {key: read_pinned(table, LAKE_SOURCES[key]) for key, table in pinned.items()}
    return run_models(con, models, {**seeds, **lake}, values, finish=record), plan


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables in the marts file's main schema."""
    rows = con.execute(
        "select table_name from duckdb_tables() where schema_name = current_schema()"
    ).fetchall()
    return {str(row[0]) for row in rows}


LOCK_WAIT_SECONDS = 30.0


def connect_for_writing(
    duckdb_path: Path, wait_seconds: float = LOCK_WAIT_SECONDS
) -> duckdb.DuckDBPyConnection:
    """Open the marts file for writing, waiting while readers (`chargeback sql`, the read API)
    hold it: DuckDB refuses a conflicting lock at once instead of waiting."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.05
    while True:
        try:
            return duckdb.connect(str(duckdb_path))
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _attach_views(
    con: duckdb.DuckDBPyConnection,
    lake: str,
    storage_options: dict[str, str] | None,
    always: bool = True,
) -> tuple[list[str], str | None]:
    # The views are a convenience for analysts: without the Delta extension the marts still build.
    if not always:
        present = lake_views_present(con, lake, storage_options)
        if present is not None:
            return present, None
    try:
        return attach_lake_views(con, lake, storage_options), None
    except (ExtensionUnavailable, ValueError, duckdb.Error) as error:
        return [], f"skipped: {error}"


def lake_views_present(
    con: duckdb.DuckDBPyConnection, lake: str, storage_options: dict[str, str] | None
) -> list[str] | None:
    """The lake views, if the file already has exactly one per existing lake table; else None
    (loading the Delta extension to recreate them costs a third of a second)."""
    rows = con.execute(
        "select view_name from duckdb_views() where not internal and schema_name = current_schema()"
    ).fetchall()
    views = {str(row[0]) for row in rows} & {view_name(table) for table in LAKE_TABLES}
    wanted = [
        view_name(table)
        for table in LAKE_TABLES
        if table_exists(table_uri(lake, table), storage_options)
    ]
    return wanted if views == set(wanted) else None
