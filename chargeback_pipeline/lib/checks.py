"""Chargeback quality measures over usage_costs: what is unpriced, what is unallocated."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from chargeback_pipeline.lib.tables import UNALLOCATED


def unpriced_usage(costs: pl.DataFrame) -> pl.DataFrame:
    """Billable rows (tokens or images) with no price, counted per model and deployment type."""
    billable = (pl.col("total_tokens") > 0) | (pl.col("images") > 0)
    return (
        costs.filter(~pl.col("priced") & billable)
        .group_by("model", "deployment_type")
        .agg(pl.len().alias("requests"), pl.col("total_tokens").sum())
        .sort("requests", descending=True)
    )


def unallocated_share(costs: pl.DataFrame) -> Decimal:
    """The share of the hour's priced cost charged to UNALLOCATED (0 when nothing cost anything)."""
    total = costs["total_cost"].sum()
    if not total:
        return Decimal(0)
    unallocated = costs.filter(pl.col("cost_center") == UNALLOCATED)["total_cost"].sum() or 0
    return Decimal(unallocated) / Decimal(total)


def estimated_share(events: pl.DataFrame) -> float:
    """The share of an hour's tokens that were estimated from text lengths (0 without tokens)."""
    total = events["total_tokens"].sum()
    if not total:
        return 0.0
    estimated = events.filter(pl.col("token_source") == "estimated")["total_tokens"].sum()
    return float(estimated) / float(total)
