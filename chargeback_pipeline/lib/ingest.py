"""One hour of stored envelopes into usage rows and quarantine rows, deduplicated by request_id.

An hour is finished in request_id buckets, so its size sets disk use, not memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from chargeback_pipeline.lib.bounded import bounded_map
from chargeback_pipeline.lib.costs import attach_deployments
from chargeback_pipeline.lib.hour_summary import FrameTally, HourTally
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
from chargeback_pipeline.lib.spill import BucketSpill, FrameParts, collect_parts, group_parts
from chargeback_pipeline.lib.tables import USAGE_EVENTS, conform
from chargeback_pipeline.lib.validation import (
    failed_rows,
    parsed_envelope_schema,
    schema_failures,
    usage_events_schema,
)

# Columns that decide whether two deliveries of one request_id are the same call.
_CALL_CONTENT = [c for c in PARSED_ENVELOPES if c not in ("source", "source_line")]


BUCKET_BYTES = 64 * 1024 * 1024
"""Envelope bytes per request_id bucket on disk (a bucket of 64 MB of envelopes is 6-60 k rows)."""
FINISH_ROWS = 50_000
"""Rows finished together: buckets are grouped to about this many (at most 1.5x), so memory
follows it, not the hour's size, while pandera's fixed cost per validation (~30 ms) is paid a
few times an hour."""
FINISH_THREADS = 2
"""Groups finished at once (Polars releases the GIL for most of a group's work)."""


@dataclass(frozen=True)
class HourIngest:
    """The outcome of one hour: rejected envelopes, the reconciliation counts, and the usage
    rows' rollup and output-schema failures (the rows themselves went to a writer)."""

    quarantined: pl.DataFrame
    envelopes_read: int
    usage_rows: int
    duplicates_dropped: int
    usage_summary: pl.DataFrame
    usage_failures: pl.DataFrame


@dataclass(frozen=True)
class KeptHour(HourIngest):
    """An hour ingested with its usage rows kept in parts (in memory, or on disk)."""

    usage_parts: FrameParts

    @property
    def usage_events(self) -> pl.DataFrame:
        """Every usage row at once, by request_id (for small hours and tests)."""
        return self.usage_parts.collect().sort("request_id")


@dataclass(frozen=True)
class BucketedHour:
    """An hour parsed into request_id buckets, with its rejects, waiting to be finished."""

    rows: BucketSpill
    rejected: pl.DataFrame
    envelopes_read: int


@dataclass(frozen=True)
class BucketIngest:
    """Rows of whole request_ids finished: usage rows and what goes to quarantine."""

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
    repeated = valid["request_id"].is_duplicated()
    # Redeliveries are rare: only their rows need sorting and comparing column by column.
    winners, conflicts, dropped = _settle_redeliveries(valid.filter(repeated))
    return pl.concat([valid.filter(~repeated), winners]), conflicts, dropped


def _settle_redeliveries(repeated: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """`drop_duplicates` of rows whose request_ids all occur more than once."""
    ordered = repeated.sort("request_id", "source", "source_line")
    distinct = ordered.unique(subset=_CALL_CONTENT, keep="first", maintain_order=True)
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
    return winners, conflicts, ordered.height - distinct.height


def ingest_hour(
    stored: Iterable[Stored],
    hour: str,
    deployments: pl.DataFrame,
    pseudonym_key: bytes,
) -> KeptHour:
    """Parse, validate, deduplicate and enrich one hour's envelopes held in memory."""
    bucketed = bucket_batches([parse_hour(stored, pseudonym_key)], buckets=1)
    return keep_hour(bucketed, hour, deployments)


def ingest_slices(
    read: Callable[[S], tuple[Sequence[Stored], int]],
    slices: Sequence[S],
    hour: str,
    deployments: pl.DataFrame,
    pseudonym_key: bytes,
    workers: int = 1,
    spill: Path | None = None,
    bucket_bytes: int = BUCKET_BYTES,
    finish_rows: int | None = None,
) -> KeptHour:
    """`bucket_slices` then `finish_hour`, keeping the usage rows (in `spill`, if given)."""
    bucketed = bucket_slices(read, slices, pseudonym_key, workers, spill, bucket_bytes)
    return keep_hour(bucketed, hour, deployments, spill and spill / "usage_events", finish_rows)


def bucket_slices(
    read: Callable[[S], tuple[Sequence[Stored], int]],
    slices: Sequence[S],
    pseudonym_key: bytes,
    workers: int = 1,
    spill: Path | None = None,
    bucket_bytes: int = BUCKET_BYTES,
) -> BucketedHour:
    """Parse an hour read slice by slice from the store (see `parse_slices`) into buckets; with
    a `spill` folder, rows wait on disk and memory stays flat whatever the hour's size."""
    hour_bytes = sum(part.end - part.start for part in slices)
    buckets = -(-hour_bytes // bucket_bytes) if spill is not None else 1
    batches = parse_slices(read, slices, pseudonym_key, workers)
    return bucket_batches(batches, buckets, spill and spill / "parsed")


def bucket_batches(
    batches: Iterable[ParsedBatch], buckets: int, spill: Path | None = None
) -> BucketedHour:
    """Spread parsed rows into request_id buckets (in `spill`, if given)."""
    rows = BucketSpill("request_id", buckets, PARSED_ENVELOPES, spill)
    rejected: list[pl.DataFrame] = [pl.DataFrame(schema=REJECTED)]
    envelopes = 0
    for batch_rows, batch_rejects in batches:
        rows.add(batch_rows)
        rejected.append(batch_rejects)
        envelopes += batch_rows.height + batch_rejects.height
    return BucketedHour(rows, pl.concat(rejected), envelopes)


def keep_hour(
    bucketed: BucketedHour,
    hour: str,
    deployments: pl.DataFrame,
    folder: Path | None = None,
    finish_rows: int | None = None,
) -> KeptHour:
    """`finish_hour` into parts kept in memory, or in `folder`."""
    parts = FrameParts(USAGE_EVENTS, folder)
    outcome = finish_hour(bucketed, hour, deployments, parts.extend, finish_rows)
    return KeptHour(**vars(outcome), usage_parts=parts)


def finish_hour(
    bucketed: BucketedHour,
    hour: str,
    deployments: pl.DataFrame,
    write_usage: Callable[[Iterable[pl.DataFrame]], None],
    finish_rows: int | None = None,
) -> HourIngest:
    """Finish the buckets in groups of up to `finish_rows` (FINISH_ROWS) rows, streaming their
    usage rows into `write_usage` (which must take them all, e.g. into one Delta commit); the
    rest of the outcome is complete once it returns."""
    finishing = _HourFinishing(bucketed, hour, deployments, finish_rows)
    write_usage(finishing.usage_events())
    return finishing.outcome()


class _HourFinishing:
    """Groups of buckets finished FINISH_THREADS at a time; the outcome adds up as rows pass."""

    def __init__(
        self, bucketed: BucketedHour, hour: str, deployments: pl.DataFrame, finish_rows: int | None
    ) -> None:
        schema = usage_events_schema()
        self._bucketed, self._hour, self._deployments = bucketed, hour, deployments
        self._finish_rows = finish_rows or FINISH_ROWS
        self._tally = HourTally(lambda frame: schema_failures(frame, schema))
        self._quarantined = [bucketed.rejected]
        self._rows = self._duplicates = 0
        self._done = False

    def usage_events(self) -> Iterator[pl.DataFrame]:
        """Each group's usage rows, in bucket order."""
        finish = partial(
            _finish_group, hour=self._hour, deployments=self._deployments, tally=self._tally
        )
        buckets = self._bucketed.rows.bucket_parts()
        groups = group_parts(buckets, self._finish_rows, threads=FINISH_THREADS)
        with ThreadPoolExecutor(FINISH_THREADS, thread_name_prefix="finish-bucket") as pool:
            for finished, usage_tally in bounded_map(pool, finish, groups, FINISH_THREADS):
                self._quarantined.append(finished.quarantined)
                self._tally.record(usage_tally)
                self._rows += finished.usage_events.height
                self._duplicates += finished.duplicates_dropped
                yield finished.usage_events
        self._done = True

    def outcome(self) -> HourIngest:
        """The hour's outcome, once every bucket's usage rows have been taken."""
        if not self._done:
            raise RuntimeError("the usage writer stopped before every bucket was finished")
        quarantined = pl.concat(self._quarantined).with_columns(pl.lit(self._hour).alias("hour"))
        return HourIngest(
            quarantined=conform(quarantined, QUARANTINE_CANDIDATES).sort("source", "source_line"),
            envelopes_read=self._bucketed.envelopes_read,
            usage_rows=self._rows,
            duplicates_dropped=self._duplicates,
            usage_summary=self._tally.summary(USAGE_EVENTS),
            usage_failures=self._tally.failures(),
        )


def _finish_group(
    group: list[FrameParts], hour: str, deployments: pl.DataFrame, tally: HourTally
) -> tuple[BucketIngest, FrameTally]:
    """Read a group of buckets, finish it and measure its usage rows (in a finishing thread)."""
    parsed = collect_parts(group)
    finished = finish_bucket(parsed, hour, deployments)
    return finished, tally.measure(finished.usage_events)


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
