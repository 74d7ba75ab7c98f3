"""Column schemas of the lake's Delta tables (CONTRACT §3), shared by writers and checks."""

from __future__ import annotations

import polars as pl

MONEY = pl.Decimal(38, 12)
"""Exact money: prices have at most 6 decimals per million units, so 12 hold any cost."""

PRICE = pl.Decimal(38, 6)
UTC_TIMESTAMP = pl.Datetime("us", "UTC")

USAGE_EVENTS: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "timestamp": UTC_TIMESTAMP,
    "hour": pl.String(),
    "subscription_id": pl.String(),
    "subscription_name": pl.String(),
    "product_id": pl.String(),
    "api_id": pl.String(),
    "cost_center": pl.String(),
    "project": pl.String(),
    "tags": pl.String(),
    "user_hash": pl.String(),
    "app_id": pl.String(),
    "gateway_region": pl.String(),
    "backend_id": pl.String(),
    "deployment": pl.String(),
    "api_version": pl.String(),
    "model": pl.String(),
    "deployment_type": pl.String(),
    "billing": pl.String(),
    "operation": pl.String(),
    "status_code": pl.Int32(),
    "streamed": pl.Boolean(),
    "prompt_tokens": pl.Int64(),
    "cached_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "reasoning_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "images": pl.Int64(),
    "token_source": pl.String(),
    "elapsed_ms": pl.Int64(),
    "request_bytes": pl.Int64(),
    "response_bytes": pl.Int64(),
    "schema_version": pl.String(),
    "source": pl.String(),
}
"""One row per distinct request_id; `cost_center` is the caller's cost-center tag as sent."""

USAGE_COSTS: dict[str, pl.DataType] = {
    **{k: v for k, v in USAGE_EVENTS.items() if k != "cost_center"},
    "cost_center": pl.String(),
    "cost_center_tag": pl.String(),
    "allocation": pl.String(),
    "input_cost": MONEY,
    "cached_input_cost": MONEY,
    "output_cost": MONEY,
    "image_cost": MONEY,
    "total_cost": MONEY,
    "currency": pl.String(),
    "priced": pl.Boolean(),
    "price_model": pl.String(),
    "price_deployment_type": pl.String(),
    "price_unit": pl.String(),
    "price_effective_from": UTC_TIMESTAMP,
}
"""`cost_center` is the allocated one (tag, else subscription mapping, else UNALLOCATED)."""

QUARANTINED_ENVELOPES: dict[str, pl.DataType] = {
    "source": pl.String(),
    "source_line": pl.Int64(),
    "request_id": pl.String(),
    "hour": pl.String(),
    "reason": pl.String(),
    "detected_at": UTC_TIMESTAMP,
}
"""One row per rejected envelope; `reason` starts with a stable code. Never body text."""

UNALLOCATED = "UNALLOCATED"
TOKEN_SOURCES = ("reported", "gateway", "log_analytics", "estimated", "none")
OPERATIONS = (
    "chat_completions",
    "completions",
    "embeddings",
    "responses",
    "image_generations",
    "other",
)


def empty_frame(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the table's columns, for hours with no rows."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select the table's columns in order with their declared types."""
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
