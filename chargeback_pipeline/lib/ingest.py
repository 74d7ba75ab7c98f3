"""One hour of stored envelopes into usage rows and quarantine rows, deduplicated by request_id.

An hour is finished in request_id buckets, so its size sets disk use, not memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from chargeback_pipeline.lib.bounded import bounded_map
from chargeback_pipeline.lib.costs import attach_deployments
from chargeback_pipeline.lib.hour_summary import HourTally
from chargeback_pipeline.lib.hours import hour_start
from chargeback_pipeline.lib.parse import (
    PARSED_ENVELOPES,
    QUARANTINE_CANDIDATES,
    REJECTED,
    ParsedBatch,
    S,
    Stored,
    parse_hour,
    parse_slices,
)
from chargeback_pipeline.lib.spill import BucketSpill, FrameParts
from chargeback_pipeline.lib.tables import USAGE_EVENTS, conform
from chargeback_pipeline.lib.validation import (
    failed_rows,
    parsed_envelope_schema,
    schema_failures,
    usage_events_schema,
)

# Columns that decide whether two deliveries of one request_id are the same call.
_CALL_CONTENT = [c for c in PARSED_ENVELOPES if c not in ("source", "source_line")]


BUCKET_BYTES = 256 * 1024 * 1024
"""Envelope bytes per dedup bucket: an hour is finished a few buckets at a time, so memory
follows this, not the hour's size (a bucket of 256 MB of envelopes is 25-250 k rows)."""
FINISH_THREADS = 2
"""Buckets finished at once (Polars releases the GIL for most of a bucket's work)."""


@dataclass(frozen=True)
class HourIngest:
    """The outcome of one hour: billable rows (in parts, possibly on disk), rejected envelopes,
    the reconciliation counts, and the usage rows' rollup and output-schema failures."""

    usage_parts: FrameParts
    quarantined: pl.DataFrame
    envelopes_read: int
    duplicates_dropped: int
    usage_summary: pl.DataFrame
    usage_failures: pl.DataFrame

    @property
    def usage_rows(self) -> int:
        return self.usage_parts.rows

    @property
    def usage_events(self) -> pl.DataFrame:
        """Every usage row at once, by request_id (for small hours and tests)."""
        return self.usage_parts.collect().sort("request_id")


@dataclass(frozen=True)
class BucketIngest:
    """One dedup bucket finished: its usage rows and what it sends to quarantine."""

    usage_events: pl.DataFrame
    quarantined: pl.DataFrame
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
    return finish_hour([parse_hour(stored, pseudonym_key)], hour, deployments, buckets=1)


def ingest_slices(
    read: Callable[[S], tuple[Sequence[Stored], int]],
    slices: Sequence[S],
    hour: str,
    deployments: pl.DataFrame,
    pseudonym_key: bytes,
    workers: int = 1,
    spill: Path | None = None,
    bucket_bytes: int = BUCKET_BYTES,
) -> HourIngest:
    """Ingest an hour read slice by slice from the store (see `parse_slices`); with a `spill`
    folder, rows wait on disk and memory stays flat whatever the hour's size."""
    hour_bytes = sum(part.end - part.start for part in slices)
    buckets = -(-hour_bytes // bucket_bytes) if spill is not None else 1
    batches = parse_slices(read, slices, pseudonym_key, workers)
    return finish_hour(batches, hour, deployments, buckets, spill)


def finish_hour(
    batches: Iterable[ParsedBatch],
    hour: str,
    deployments: pl.DataFrame,
    buckets: int,
    spill: Path | None = None,
) -> HourIngest:
    """Spread parsed rows into request_id buckets, then finish FINISH_THREADS buckets at a time."""
    rows = BucketSpill("request_id", buckets, PARSED_ENVELOPES, spill and spill / "parsed")
    rejected: list[pl.DataFrame] = [pl.DataFrame(schema=REJECTED)]
    envelopes = 0
    for batch_rows, batch_rejects in batches:
        rows.add(batch_rows)
        rejected.append(batch_rejects)
        envelopes += batch_rows.height + batch_rejects.height
    usage = FrameParts(USAGE_EVENTS, spill and spill / "usage_events")
    quarantined = [pl.concat(rejected)]
    schema = usage_events_schema()
    tally = HourTally(lambda frame: schema_failures(frame, schema))
    duplicates = 0
    finish = partial(finish_bucket, hour=hour, deployments=deployments)
    with ThreadPoolExecutor(FINISH_THREADS, thread_name_prefix="finish-bucket") as pool:
        for finished in bounded_map(pool, finish, rows.buckets(), FINISH_THREADS):
            usage.append(finished.usage_events)
            quarantined.append(finished.quarantined)
            tally.add(finished.usage_events)
            duplicates += finished.duplicates_dropped
    return HourIngest(
        usage_parts=usage,
        quarantined=conform(
            pl.concat(quarantined).with_columns(pl.lit(hour).alias("hour")), QUARANTINE_CANDIDATES
        ).sort("source", "source_line"),
        envelopes_read=envelopes,
        duplicates_dropped=duplicates,
        usage_summary=tally.summary(USAGE_EVENTS),
        usage_failures=tally.failures(),
    )


def finish_bucket(parsed: pl.DataFrame, hour: str, deployments: pl.DataFrame) -> BucketIngest:
    """Validate, deduplicate and enrich rows that hold every delivery of their request_ids."""
    valid, invalid = split_valid(parsed, hour)
    unique, conflicts, duplicates = drop_duplicates(valid)
    events = attach_deployments(unique.lazy().with_columns(pl.lit(hour).alias("hour")), deployments)
    return BucketIngest(
        usage_events=conform(events.collect(), USAGE_EVENTS).sort("request_id"),
        quarantined=pl.concat([invalid, conflicts]),
        duplicates_dropped=duplicates,
    )
