"""One hour of stored envelopes into usage rows and quarantine rows, deduplicated by request_id."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from chargeback_pipeline.lib.costs import attach_deployments
from chargeback_pipeline.lib.hours import hour_start
from chargeback_pipeline.lib.parse import (
    PARSED_ENVELOPES,
    QUARANTINE_CANDIDATES,
    ParsedBatch,
    S,
    Stored,
    concat_batches,
    parse_hour,
    parse_slices,
)
from chargeback_pipeline.lib.tables import USAGE_EVENTS, conform
from chargeback_pipeline.lib.validation import failed_rows, parsed_envelope_schema

# Columns that decide whether two deliveries of one request_id are the same call.
_CALL_CONTENT = [c for c in PARSED_ENVELOPES if c not in ("source", "source_line")]


@dataclass(frozen=True)
class HourIngest:
    """The outcome of one hour: billable rows, rejected envelopes and the reconciliation counts."""

    usage_events: pl.DataFrame
    quarantined: pl.DataFrame
    envelopes_read: int
    duplicates_dropped: int


def split_valid(parsed: pl.DataFrame, hour: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows that pass the pandera rules, and the failing ones with every reason at once."""
    failures = failed_rows(parsed, parsed_envelope_schema(hour_start(hour)))
    indexed = parsed.with_row_index("index")
    good = indexed.join(failures, on="index", how="anti").drop("index")
    bad = indexed.join(failures, on="index", how="inner").select(
        "source", "source_line", "request_id", "reason"
    )
    return good, bad


def drop_duplicates(valid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """One row per request_id: identical redeliveries are dropped, conflicting ones quarantined.

    The first delivery (by source, then line) wins a conflict, so reruns pick the same winner.
    """
    distinct = valid.sort("request_id", "source", "source_line").unique(
        subset=_CALL_CONTENT, keep="first", maintain_order=True
    )
    ranked = distinct.with_columns(
        pl.int_range(pl.len()).over("request_id").alias("_delivery"),
        pl.first("source").over("request_id").alias("_winner"),
    )
    winners = ranked.filter(pl.col("_delivery") == 0).drop("_delivery", "_winner")
    conflicts = ranked.filter(pl.col("_delivery") > 0).select(
        "source",
        "source_line",
        "request_id",
        pl.format("conflicting_duplicate: same request_id as a delivery in {}", "_winner").alias(
            "reason"
        ),
    )
    return winners, conflicts, valid.height - distinct.height


def ingest_hour(
    stored: Iterable[Stored],
    hour: str,
    deployments: pl.DataFrame,
    pseudonym_key: bytes,
) -> HourIngest:
    """Parse, validate, deduplicate and enrich one hour's envelopes held in memory."""
    return ingest_parsed(parse_hour(stored, pseudonym_key), hour, deployments)


def ingest_slices(
    read: Callable[[S], tuple[Sequence[Stored], int]],
    slices: Sequence[S],
    hour: str,
    deployments: pl.DataFrame,
    pseudonym_key: bytes,
    workers: int = 1,
) -> HourIngest:
    """Ingest an hour read slice by slice from the store (see `parse_slices`)."""
    parsed = concat_batches(parse_slices(read, slices, pseudonym_key, workers))
    return ingest_parsed(parsed, hour, deployments)


def ingest_parsed(parsed: ParsedBatch, hour: str, deployments: pl.DataFrame) -> HourIngest:
    """Validate, deduplicate and enrich an hour's parsed rows (`parse_slices` or `parse_hour`)."""
    rows, rejected = parsed
    valid, invalid = split_valid(rows, hour)
    unique, conflicts, duplicates = drop_duplicates(valid)
    events = attach_deployments(unique.lazy().with_columns(pl.lit(hour).alias("hour")), deployments)
    quarantined = pl.concat([rejected, invalid, conflicts]).with_columns(pl.lit(hour).alias("hour"))
    return HourIngest(
        usage_events=conform(events.collect(), USAGE_EVENTS).sort("request_id"),
        quarantined=conform(quarantined, QUARANTINE_CANDIDATES).sort("source", "source_line"),
        envelopes_read=rows.height + rejected.height,
        duplicates_dropped=duplicates,
    )
