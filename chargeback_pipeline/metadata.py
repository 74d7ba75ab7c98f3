"""Dagster metadata for the lake's tables: Dagster's own keys plus the hour's sums and previews."""

from __future__ import annotations

import re
from decimal import Decimal

import dagster as dg
import polars as pl

from chargeback_pipeline.lib.checks import estimated_share
from chargeback_pipeline.lib.hour_summary import (
    cost_by_currency,
    costs_preview,
    events_preview,
    markdown_table,
    quarantine_preview,
    reason_counts,
    token_totals,
)


def column_schema(
    columns: dict[str, pl.DataType], docs: dict[str, str] | None = None
) -> dg.TableSchema:
    """A TableSchema for `dagster/column_schema` from a table's Polars column types."""
    docs = docs or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(dtype), description=docs.get(name))
            for name, dtype in columns.items()
        ]
    )


def table_metadata(uri: str, columns: dict[str, pl.DataType]) -> dict[str, object]:
    """Static metadata for an asset spec: where the table lives and its columns."""
    return {"dagster/uri": uri, "dagster/column_schema": column_schema(columns)}


def failures_preview(failures: pl.DataFrame, limit: int = 20) -> dg.MarkdownMetadataValue:
    """A markdown table of the first failure cases of a check."""
    return dg.MetadataValue.md(markdown_table(failures.head(limit)))


def cost_metadata(totals: dict[str, Decimal]) -> dict[str, dg.MetadataValue]:
    """Per currency: `cost_total_<ccy>` as the exact decimal text, `..._approx` a float to plot."""
    metadata: dict[str, dg.MetadataValue] = {}
    for currency, total in totals.items():
        name = "cost_total_" + re.sub(r"[^a-z0-9]+", "_", currency.lower())
        metadata[name] = dg.MetadataValue.text(f"{total:f}")
        metadata[f"{name}_approx"] = dg.MetadataValue.float(float(total))
    return metadata


def _token_metadata(summary: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    return {name: dg.MetadataValue.int(total) for name, total in token_totals(summary).items()}


def _row_count(summary: pl.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.int(int(summary["requests"].sum()))


def usage_events_metadata(summary: pl.DataFrame, hour: str) -> dict[str, dg.MetadataValue]:
    """One hour of usage_events (its rollup): rows, token sums, estimated share, a preview."""
    return {
        "dagster/partition_row_count": _row_count(summary),
        **_token_metadata(summary),
        "tokens_estimated_share": dg.MetadataValue.float(estimated_share(summary)),
        "preview": dg.MetadataValue.md(events_preview(summary, hour)),
    }


def usage_costs_metadata(summary: pl.DataFrame, hour: str) -> dict[str, dg.MetadataValue]:
    """One hour of usage_costs (its rollup): rows, token sums, exact cost per currency, top
    spenders."""
    return {
        "dagster/partition_row_count": _row_count(summary),
        **_token_metadata(summary),
        **cost_metadata(cost_by_currency(summary)),
        "preview": dg.MetadataValue.md(costs_preview(summary, hour)),
    }


def quarantine_metadata(quarantined: pl.DataFrame, hour: str) -> dict[str, dg.MetadataValue]:
    """One hour of quarantined_envelopes: count, count per reason code, a preview of the codes."""
    return {
        "dagster/partition_row_count": dg.MetadataValue.int(quarantined.height),
        "quarantined": dg.MetadataValue.int(quarantined.height),
        "quarantine_reasons": dg.MetadataValue.json(reason_counts(quarantined)),
        "preview": dg.MetadataValue.md(quarantine_preview(quarantined, hour)),
    }
