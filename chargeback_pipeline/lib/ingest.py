"""One hour of stored envelopes into usage rows and quarantine rows, deduplicated by request_id."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from chargeback_pipeline.lib.costs import attach_deployments
from chargeback_pipeline.lib.envelopes import EnvelopeError, decode_envelope, envelope_row
from chargeback_pipeline.lib.hours import hour_start
from chargeback_pipeline.lib.tables import QUARANTINED_ENVELOPES, USAGE_EVENTS, conform
from chargeback_pipeline.lib.validation import failed_rows, parsed_envelope_schema

_DERIVED_LATER = ("hour", "deployment_type", "billing")
PARSED_ENVELOPES: dict[str, pl.DataType] = {
    **{k: v for k, v in USAGE_EVENTS.items() if k not in _DERIVED_LATER},
    "source_line": pl.Int64(),
}
QUARANTINE_CANDIDATES = {k: v for k, v in QUARANTINED_ENVELOPES.items() if k != "detected_at"}
# Columns that decide whether two deliveries of one request_id are the same call.
_CALL_CONTENT = [c for c in PARSED_ENVELOPES if c not in ("source", "source_line")]


@dataclass(frozen=True)
class StoredEnvelope:
    """One stored envelope: where it was read from and its raw bytes."""

    source: str
    line: int
    raw: bytes


@dataclass(frozen=True)
class HourIngest:
    """The outcome of one hour: billable rows, rejected envelopes and the reconciliation counts."""

    usage_events: pl.DataFrame
    quarantined: pl.DataFrame
    envelopes_read: int
    duplicates_dropped: int


def parse_envelopes(
    stored: Iterable[StoredEnvelope], pseudonym_key: bytes
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse each envelope into a content-free row, or a quarantine candidate with its reason."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for item in stored:
        request_id = None
        try:
            envelope = decode_envelope(item.raw)
            request_id = envelope.get("request_id")
            rows.append(envelope_row(envelope, item.source, item.line, pseudonym_key))
        except EnvelopeError as error:
            rejects.append(
                {
                    "source": item.source,
                    "source_line": item.line,
                    "request_id": request_id if isinstance(request_id, str) else None,
                    "reason": str(error),
                }
            )
    reject_schema = {k: v for k, v in QUARANTINE_CANDIDATES.items() if k != "hour"}
    return (
        pl.DataFrame(rows, schema=PARSED_ENVELOPES),
        pl.DataFrame(rejects, schema=reject_schema),
    )


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
    stored: Iterable[StoredEnvelope],
    hour: str,
    deployments: pl.DataFrame,
    pseudonym_key: bytes,
) -> HourIngest:
    """Parse, validate, deduplicate and enrich one hour's envelopes."""
    parsed, rejected = parse_envelopes(stored, pseudonym_key)
    valid, invalid = split_valid(parsed, hour)
    unique, conflicts, duplicates = drop_duplicates(valid)
    events = attach_deployments(unique.lazy().with_columns(pl.lit(hour).alias("hour")), deployments)
    quarantined = pl.concat([rejected, invalid, conflicts]).with_columns(pl.lit(hour).alias("hour"))
    return HourIngest(
        usage_events=conform(events.collect(), USAGE_EVENTS).sort("request_id"),
        quarantined=conform(quarantined, QUARANTINE_CANDIDATES).sort("source", "source_line"),
        envelopes_read=parsed.height + rejected.height,
        duplicates_dropped=duplicates,
    )
