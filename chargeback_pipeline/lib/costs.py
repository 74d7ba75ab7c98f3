"""Pricing and cost-center allocation of usage rows: exact decimals, effective-dated."""

from __future__ import annotations

import polars as pl

from chargeback_pipeline.lib.reference import ReferenceData
from chargeback_pipeline.lib.tables import MONEY, UNALLOCATED, USAGE_COSTS, conform

_PER_MILLION = 1_000_000


def attach_deployments(events: pl.LazyFrame, deployments: pl.DataFrame) -> pl.LazyFrame:
    """Add deployment type and billing; fill the model when the response did not name one."""
    exact = deployments.select(
        "deployment",
        "backend_id",
        pl.col("model").alias("_model_exact"),
        pl.col("deployment_type").alias("_type_exact"),
        pl.col("billing").alias("_billing_exact"),
    )
    # A deployment name alone identifies the row when the envelope carries no backend id.
    by_name = deployments.unique("deployment", keep="first", maintain_order=True).select(
        "deployment",
        pl.col("model").alias("_model_name"),
        pl.col("deployment_type").alias("_type_name"),
        pl.col("billing").alias("_billing_name"),
    )
    return (
        events.join(exact.lazy(), on=["deployment", "backend_id"], how="left", nulls_equal=False)
        .join(by_name.lazy(), on="deployment", how="left")
        .with_columns(
            pl.coalesce("model", "_model_exact", "_model_name").alias("model"),
            pl.coalesce("_type_exact", "_type_name").alias("deployment_type"),
            pl.coalesce("_billing_exact", "_billing_name").alias("billing"),
        )
        .drop("^_.*$")
    )


def allocate_cost_centers(usage: pl.LazyFrame, cost_centers: pl.DataFrame) -> pl.LazyFrame:
    """Known cost-center tag, else the subscription's mapping in force, else UNALLOCATED."""
    known = cost_centers.select(pl.col("cost_center").unique().alias("_known"))
    mappings = cost_centers.select(
        "subscription_id",
        pl.col("effective_from").alias("_from"),
        pl.col("effective_to").alias("_to"),
        pl.col("cost_center").alias("_mapped"),
    ).sort("_from")
    tagged = pl.col("cost_center_tag").is_in(known["_known"].implode())
    mapped = pl.col("_mapped").is_not_null() & (
        pl.col("_to").is_null() | (pl.col("timestamp") < pl.col("_to"))
    )
    return (
        usage.rename({"cost_center": "cost_center_tag"})
        .sort("timestamp")
        .join_asof(
            mappings.lazy(),
            left_on="timestamp",
            right_on="_from",
            by="subscription_id",
            strategy="backward",
            check_sortedness=False,  # sorted by timestamp above, which orders every group
        )
        .with_columns(
            pl.when(tagged)
            .then(pl.col("cost_center_tag"))
            .when(mapped)
            .then(pl.col("_mapped"))
            .otherwise(pl.lit(UNALLOCATED))
            .alias("cost_center"),
            pl.when(tagged)
            .then(pl.lit("tag"))
            .when(mapped)
            .then(pl.lit("subscription"))
            .otherwise(pl.lit("unallocated"))
            .alias("allocation"),
        )
        .drop("^_.*$")
    )


def _cost(quantity: str, price: pl.Expr, per: int) -> pl.Expr:
    return (pl.col(quantity).cast(MONEY) * price / per).cast(MONEY)


def price_usage(usage: pl.LazyFrame, price_book: pl.DataFrame) -> pl.LazyFrame:
    """Price each row with the price-book row in force at its timestamp; no row means unpriced."""
    prices = price_book.select(
        pl.col("model").alias("price_model"),
        pl.col("deployment_type").alias("price_deployment_type"),
        pl.col("unit").alias("price_unit"),
        pl.col("effective_from").alias("price_effective_from"),
        pl.col("effective_to").alias("_to"),
        "input_per_1m",
        "cached_input_per_1m",
        "output_per_1m",
        "per_unit",
        pl.col("currency").alias("_currency"),
    ).sort("price_effective_from")
    in_force = pl.col("price_effective_from").is_not_null() & (
        pl.col("_to").is_null() | (pl.col("timestamp") < pl.col("_to"))
    )
    zero = pl.lit(0).cast(MONEY)
    input_price = pl.col("input_per_1m")
    costs = {
        "input_cost": _cost("_uncached", pl.coalesce(input_price, zero), _PER_MILLION),
        "cached_input_cost": _cost(
            "cached_tokens", pl.coalesce("cached_input_per_1m", input_price, zero), _PER_MILLION
        ),
        "output_cost": _cost("completion_tokens", pl.coalesce("output_per_1m", zero), _PER_MILLION),
        "image_cost": _cost("images", pl.coalesce("per_unit", zero), 1),
    }
    return (
        usage.with_columns(
            pl.when(pl.col("operation") == "image_generations")
            .then(pl.lit("image"))
            .otherwise(pl.lit("token"))
            .alias("_unit"),
            (pl.col("prompt_tokens") - pl.col("cached_tokens")).alias("_uncached"),
        )
        .sort("timestamp")
        .join_asof(
            prices.lazy(),
            left_on="timestamp",
            right_on="price_effective_from",
            by_left=["model", "deployment_type", "_unit"],
            by_right=["price_model", "price_deployment_type", "price_unit"],
            strategy="backward",
            check_sortedness=False,  # sorted by timestamp above, which orders every group
        )
        .with_columns(in_force.alias("priced"))
        .with_columns(
            [pl.when("priced").then(expr).alias(name) for name, expr in costs.items()],
        )
        .with_columns(
            pl.when("priced").then(pl.sum_horizontal(*costs)).cast(MONEY).alias("total_cost"),
            pl.when("priced").then(pl.col("_currency")).alias("currency"),
            # The asof join consumes its `by` keys; the price row's identity is the matched key.
            pl.when("priced").then(pl.col("model")).alias("price_model"),
            pl.when("priced").then(pl.col("deployment_type")).alias("price_deployment_type"),
            pl.when("priced").then(pl.col("_unit")).alias("price_unit"),
            pl.when("priced").then(pl.col("price_effective_from")).alias("price_effective_from"),
        )
    )


def usage_costs(events: pl.DataFrame, reference: ReferenceData) -> pl.DataFrame:
    """Cost every usage row of an hour: allocation, then pricing; ordered by request id."""
    allocated = allocate_cost_centers(events.lazy(), reference.cost_centers)
    priced = price_usage(allocated, reference.price_book)
    return conform(priced.collect(), USAGE_COSTS).sort("request_id")
