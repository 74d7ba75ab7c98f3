"""Build the DuckDB marts file from dbt_like_sql/ over the lake's Delta tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from chargeback_pipeline.lib import tables
from chargeback_pipeline.lib.delta import read_table, table_uri
from chargeback_pipeline.lib.lake_views import ExtensionUnavailable, attach_lake_views
from chargeback_pipeline.lib.sql_models import (
    ModelRun,
    ModelTestResult,
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


@dataclass(frozen=True)
class MartsBuild:
    """Every model built, with its row count, every models.yml test result and the lake views."""

    runs: list[ModelRun]
    tests: list[ModelTestResult]
    lake_views: list[str] = field(default_factory=list)
    lake_views_skipped: str | None = None


def build_marts(
    sql_dir: Path,
    lake: str,
    duckdb_path: Path,
    storage_options: dict[str, str] | None = None,
) -> MartsBuild:
    """Rebuild all models in one transaction, then run their tests; a failure keeps the old file."""
    models = order_models(load_models(sql_dir))
    used = {source for model in models for source in model.sources}
    sources = {
        key: read_table(table_uri(lake, key[1]), LAKE_SOURCES[key], storage_options) for key in used
    }
    docs = load_model_docs(sql_dir / "models.yml")
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(duckdb_path)) as con:
        runs = run_models(con, models, sources)
        results = [result for model in models for result in run_model_tests(con, model.name, docs)]
        views, skipped = _attach_views(con, lake, storage_options)
    return MartsBuild(runs, results, views, skipped)


def _attach_views(
    con: duckdb.DuckDBPyConnection, lake: str, storage_options: dict[str, str] | None
) -> tuple[list[str], str | None]:
    # The views are a convenience for analysts: without the Delta extension the marts still build.
    try:
        return attach_lake_views(con, lake, storage_options), None
    except (ExtensionUnavailable, ValueError, duckdb.Error) as error:
        return [], f"skipped: {error}"
