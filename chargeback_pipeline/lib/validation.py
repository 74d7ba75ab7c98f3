"""pandera schemas: parsed envelopes (failures become quarantine reasons) and output tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pandera.polars as pa
import polars as pl

from chargeback_pipeline.lib.tables import (
    OPERATIONS,
    QUARANTINED_ENVELOPES,
    TOKEN_SOURCES,
    USAGE_COSTS,
    USAGE_EVENTS,
)

MAX_TOKENS_PER_CALL = 10_000_000
"""Ten times the largest context window sold today: anything above is a broken counter."""
MAX_IMAGES_PER_CALL = 1_000
TOKEN_COLUMNS = (
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
)


def rule(name: str, predicate: Callable[[pl.Expr], pl.Expr]) -> pa.Check:
    """A column check whose name is the quarantine reason code it stands for."""
    return pa.Check(lambda data: data.lazyframe.select(predicate(pl.col(data.key))), name=name)


def row_rule(name: str, predicate: pl.Expr) -> pa.Check:
    """A check across columns of one row, named by its reason code."""
    return pa.Check(lambda data: data.lazyframe.select(predicate), name=name)


def _count_column(limit: int, noun: str) -> pa.Column:
    return pa.Column(
        pl.Int64,
        checks=[
            rule(f"negative_{noun}", lambda c: c >= 0),
            rule(f"absurd_{noun}", lambda c: c <= limit),
        ],
    )


def _size_column() -> pa.Column:
    return pa.Column(pl.Int64, checks=rule("negative_size", lambda c: c >= 0), nullable=True)


def parsed_envelope_schema(hour_start: datetime) -> pa.DataFrameSchema:
    """Value rules for rows parsed from one hour's envelopes; each check is named by its reason."""
    hour_end = hour_start + timedelta(hours=1)
    return pa.DataFrameSchema(
        {
            "request_id": pa.Column(
                pl.String,
                checks=rule("bad_request_id", lambda c: c.str.len_chars().is_between(1, 128)),
            ),
            "schema_version": pa.Column(
                pl.String,
                checks=rule("unknown_schema_major", lambda c: c.str.contains(r"^1(\.\d+)?$")),
            ),
            "timestamp": pa.Column(
                pl.Datetime("us", "UTC"),
                checks=rule(
                    "outside_partition_hour",
                    lambda c: (c >= hour_start) & (c < hour_end),
                ),
            ),
            "status_code": pa.Column(
                pl.Int32, checks=rule("bad_status", lambda c: c.is_between(100, 599))
            ),
            **{column: _count_column(MAX_TOKENS_PER_CALL, "tokens") for column in TOKEN_COLUMNS},
            "images": _count_column(MAX_IMAGES_PER_CALL, "images"),
            "elapsed_ms": _size_column(),
            "request_bytes": _size_column(),
            "response_bytes": _size_column(),
            "token_source": pa.Column(
                pl.String, checks=rule("bad_token_source", lambda c: c.is_in(TOKEN_SOURCES))
            ),
            "operation": pa.Column(
                pl.String, checks=rule("bad_operation", lambda c: c.is_in(OPERATIONS))
            ),
        },
        checks=[
            row_rule("cached_exceeds_prompt", pl.col("cached_tokens") <= pl.col("prompt_tokens")),
            row_rule(
                "reasoning_exceeds_completion",
                pl.col("reasoning_tokens") <= pl.col("completion_tokens"),
            ),
        ],
        strict=False,
    )


_VALUE_SHOWN = (*TOKEN_COLUMNS, "images", "timestamp", "status_code", "elapsed_ms")


def failed_rows(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """Every (row index, reason) that fails the schema, one row per failing index, all at once."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = pl.DataFrame(errors.failure_cases).filter(pl.col("index").is_not_null())
        schema_wide = pl.DataFrame(errors.failure_cases).filter(pl.col("index").is_null())
        if schema_wide.height:
            # Wrong dtypes or missing columns are a bug in the parser, not bad input.
            raise
        return (
            cases.with_columns(
                # Values are shown only for numeric columns: a string could carry anything.
                pl.when(pl.col("column").is_in(_VALUE_SHOWN))
                .then(pl.format("{}: {} = {}", "check", "column", pl.col("failure_case")))
                .when(pl.col("column").is_not_null())
                .then(pl.format("{}: {}", "check", "column"))
                .otherwise(pl.col("check"))
                .alias("reason")
            )
            .sort("index", "check")
            .group_by("index", maintain_order=True)
            .agg(pl.col("reason").str.join("; "))
            .select(pl.col("index").cast(pl.UInt32), "reason")
        )
    return pl.DataFrame(schema={"index": pl.UInt32, "reason": pl.String})


def _typed_columns(
    columns: dict[str, pl.DataType], required: tuple[str, ...]
) -> dict[str, pa.Column]:
    return {
        name: pa.Column(dtype, nullable=name not in required) for name, dtype in columns.items()
    }


def usage_events_schema() -> pa.DataFrameSchema:
    """Output rules for `usage_events`: one row per request_id, counts in range, known sources."""
    counts = {c: _count_column(MAX_TOKENS_PER_CALL, "tokens") for c in TOKEN_COLUMNS}
    columns = _typed_columns(
        USAGE_EVENTS, ("request_id", "timestamp", "hour", "operation", "token_source")
    )
    columns.update(counts)
    columns["images"] = _count_column(MAX_IMAGES_PER_CALL, "images")
    columns["token_source"] = pa.Column(
        pl.String, checks=rule("bad_token_source", lambda c: c.is_in(TOKEN_SOURCES))
    )
    return pa.DataFrameSchema(columns, unique=["request_id"], strict=True)


def usage_costs_schema() -> pa.DataFrameSchema:
    """Output rules for `usage_costs`: every row allocated; priced rows carry costs and currency."""
    columns = _typed_columns(
        USAGE_COSTS, ("request_id", "timestamp", "hour", "cost_center", "allocation", "priced")
    )
    for money in ("input_cost", "cached_input_cost", "output_cost", "image_cost", "total_cost"):
        columns[money] = pa.Column(
            USAGE_COSTS[money], checks=rule("negative_cost", lambda c: c >= 0), nullable=True
        )
    return pa.DataFrameSchema(
        columns,
        unique=["request_id"],
        strict=True,
        checks=[
            row_rule(
                "priced_without_cost",
                ~pl.col("priced")
                | (pl.col("total_cost").is_not_null() & pl.col("currency").is_not_null()),
            ),
            row_rule(
                "total_is_not_the_sum",
                ~pl.col("priced")
                | (
                    pl.col("total_cost")
                    == pl.sum_horizontal(
                        "input_cost", "cached_input_cost", "output_cost", "image_cost"
                    )
                ),
            ),
        ],
    )


def quarantined_envelopes_schema() -> pa.DataFrameSchema:
    """Output rules for `quarantined_envelopes`: every row has a source, an hour and a reason."""
    columns = _typed_columns(QUARANTINED_ENVELOPES, ("source", "hour", "reason", "detected_at"))
    columns["reason"] = pa.Column(
        pl.String, checks=rule("reason_without_code", lambda c: c.str.contains(r"^[a-z_]+"))
    )
    return pa.DataFrameSchema(columns, strict=True)


def schema_failures(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """All failure cases of a frame against an output schema (empty when it conforms)."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return pl.DataFrame(errors.failure_cases).select("column", "check", "failure_case")
    return pl.DataFrame(schema={"column": pl.String, "check": pl.String, "failure_case": pl.String})
