"""DuckDB marts: one asset per SQL file in dbt_like_sql/, one asset check per models.yml test;
charts on the marts' materialisations and the monthly HTML report built from them."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from chargeback_pipeline import constants as c
from chargeback_pipeline.lib.charts import markdown_image
from chargeback_pipeline.lib.marts import MartsBuild, build_marts
from chargeback_pipeline.lib.sql_models import (
    ModelDoc,
    ModelRun,
    SqlModel,
    load_model_docs,
    load_models,
    order_models,
)
from chargeback_pipeline.report import (
    CHART_MARTS,
    default_reports_dir,
    mart_charts,
    write_html_report,
)
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.settings import load_settings

_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}


def mart_spec(model: SqlModel, doc: ModelDoc | None) -> dg.AssetSpec:
    """An asset for one SQL model: refs and sources are its lineage."""
    columns = doc.columns if doc else ()
    return dg.AssetSpec(
        model.name,
        group_name=c.MARTS_GROUP,
        description=(doc.description if doc else "") or model.description or None,
        deps=[*model.refs, *(table for _, table in model.sources)],
        owners=c.OWNERS,
        kinds={"duckdb", "sql"},
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(col.name, description=col.description) for col in columns]
            ),
            "sql_file": str(model.path.relative_to(model.path.parents[2])),
            "materialized": model.materialized,
        },
        automation_condition=dg.AutomationCondition.eager(),
    )


class MartsConfig(dg.Config):
    """How to build the marts."""

    full_refresh: bool = False
    """Rebuild every model from the whole lake, even where replacing the changed days would do."""


def refresh_metadata(built: MartsBuild, run: ModelRun) -> dict[str, str]:
    """What the build did to one model, and why the build took its mode."""
    days = f" {', '.join(day.isoformat() for day in run.days)}" if run.days else ""
    return {"refresh": f"{run.action}{days}", "build": f"{built.mode}: {built.reason}"}


def marts_asset() -> dg.AssetsDefinition:
    """All models as one multi-asset: they are built in one DuckDB transaction."""
    sql_dir = load_settings().sql_dir
    models = order_models(load_models(sql_dir))
    docs = load_model_docs(sql_dir / "models.yml")
    check_specs = [
        dg.AssetCheckSpec(test.name, asset=test.model, description=test.description or None)
        for doc in docs.values()
        for test in doc.tests
    ]

    @dg.multi_asset(
        name="dbt_like_marts",
        specs=[mart_spec(model, docs.get(model.name)) for model in models],
        check_specs=check_specs,
    )
    def dbt_like_marts(
        context: dg.AssetExecutionContext, config: MartsConfig, chargeback: ChargebackSettings
    ) -> Iterator[dg.MaterializeResult]:
        settings = chargeback.resolve()
        built = build_marts(
            settings.sql_dir,
            settings.lake,
            settings.duckdb_path,
            chargeback.lake_options(),
            reference_dir=settings.reference_dir,
            full_refresh=config.full_refresh,
        )
        context.log.info(f"marts {built.mode}: {built.reason}")
        charts = mart_charts(settings.duckdb_path, {run.name for run in built.runs})
        for run in built.runs:
            chart = (
                {"chart": dg.MetadataValue.md(markdown_image(charts[run.name], run.name))}
                if run.name in charts
                else {}
            )
            yield dg.MaterializeResult(
                asset_key=run.name,
                metadata={
                    "dagster/row_count": run.rows,
                    "dagster/uri": f"{settings.duckdb_path}::{run.name}",
                    **refresh_metadata(built, run),
                    **chart,
                },
            )
        for test in built.tests:
            yield dg.AssetCheckResult(
                asset_key=test.model,
                check_name=test.name,
                passed=test.passed,
                severity=_SEVERITY.get(test.severity, dg.AssetCheckSeverity.ERROR),
                metadata={"failing_rows": test.failing_rows},
            )

    return dbt_like_marts


dbt_like_marts = marts_asset()


class ReportConfig(dg.Config):
    """Which month to report and where to write it."""

    month: str | None = None
    """YYYY-MM; default: the latest month in the marts."""
    reports_dir: str | None = None
    """Folder for chargeback-YYYY-MM.html; default: reports/ beside the marts file."""


@dg.asset(
    group_name=c.MARTS_GROUP,
    deps=["chargeback_monthly", *CHART_MARTS],
    owners=c.OWNERS,
    kinds={"html"},
    description=(
        "The monthly chargeback as one self-contained HTML page: a table per cost center with "
        "its TOTAL, the daily cost and model-mix charts, unallocated and unpriced figures."
    ),
    automation_condition=dg.AutomationCondition.eager(),
)
def monthly_chargeback_report(
    config: ReportConfig, chargeback: ChargebackSettings
) -> dg.MaterializeResult:
    duckdb_path = chargeback.resolve().duckdb_path
    folder = Path(config.reports_dir) if config.reports_dir else default_reports_dir(duckdb_path)
    path = write_html_report(duckdb_path, config.month, folder)
    return dg.MaterializeResult(
        metadata={
            "dagster/uri": str(path),
            "path": dg.MetadataValue.path(str(path)),
            "month": path.stem.removeprefix("chargeback-"),
            "size_bytes": path.stat().st_size,
        }
    )
