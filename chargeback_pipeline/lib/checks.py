"""Chargeback quality measures over an hour's rollup (hour_summary.rollup): what is unpriced,
what is unallocated, what is estimated."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from chargeback_pipeline.lib.tables import UNALLOCATED


def unpriced_usage(summary: pl.DataFrame) -> pl.DataFrame:
    """Billable rows (tokens or images) with no price, counted per model and deployment type."""
    return (
        summary.filter(~pl.col("priced") & pl.col("billable"))
        .group_by("model", "deployment_type")
        .agg(pl.col("requests").sum(), pl.col("total_tokens").sum())
        .sort("requests", descending=True)
    )


def unallocated_share(summary: pl.DataFrame) -> Decimal:
    """The share of the hour's priced cost charged to UNALLOCATED (0 when nothing cost anything)."""
    total = summary["total_cost"].sum()
    if not total:
        return Decimal(0)
    unallocated = summary.filter(pl.col("cost_center") == UNALLOCATED)["total_cost"].sum() or 0
    return Decimal(unallocated) / Decimal(total)


def estimated_share(summary: pl.DataFrame) -> float:
    """The share of an hour's tokens that were estimated from text lengths (0 without tokens)."""
    total = summary["total_tokens"].sum()
    if not total:
        return 0.0
    estimated = summary.filter(pl.col("token_source") == "estimated")["total_tokens"].sum()
    return float(estimated) / float(total)
