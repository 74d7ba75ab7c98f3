"""Envelopes of one hour -> usage_events and quarantined_envelopes (Delta, hour replaced)."""

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import dagster as dg
import polars as pl

from chargeback_pipeline import constants as c
from chargeback_pipeline.lib import tables
from chargeback_pipeline.lib.checks import estimated_share
from chargeback_pipeline.lib.delta import (
    count_hour_rows,
    keep_first_detection,
    read_hours,
    replace_hour,
    replace_hour_batches,
)
from chargeback_pipeline.lib.ingest import HourIngest, bucket_slices, finish_hour
from chargeback_pipeline.lib.validation import quarantined_envelopes_schema, schema_failures
from chargeback_pipeline.metadata import (
    column_schema,
    failures_preview,
    quarantine_metadata,
    usage_events_metadata,
)
from chargeback_pipeline.partitions import hourly_partitions
from chargeback_pipeline.resources import ChargebackSettings, fail_fast_on_bad_setup
from chargeback_pipeline.store import SLICE_BYTES, hour_slices, read_store_slice

raw_envelopes = dg.AssetSpec(
    c.RAW_ENVELOPES,
    group_name=c.INGEST_GROUP,
    description="Usage envelopes written by the forwarding function, one prefix per UTC hour.",
    partitions_def=hourly_partitions,
    owners=c.OWNERS,
    kinds={"azure", "json"},
)

SCHEMA_CHECK = "pandera_schema"
RECONCILED_CHECK = "envelopes_reconciled"
ESTIMATED_CHECK = "estimated_share"
DEFAULT_ESTIMATED_WARN_SHARE = "0.01"


def _estimated(summary: pl.DataFrame) -> dg.AssetCheckResult:
    """Warn when more than a small share of the hour's tokens are estimates, not counts."""
    share = estimated_share(summary)
    warn_above = float(
        os.environ.get("CHARGEBACK_ESTIMATED_WARN_SHARE", DEFAULT_ESTIMATED_WARN_SHARE)
    )
    return dg.AssetCheckResult(
        asset_key=c.USAGE_EVENTS,
        check_name=ESTIMATED_CHECK,
        passed=share <= warn_above,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"share": share, "warn_above": warn_above},
    )


def _schema_check(asset: str, failures: pl.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=SCHEMA_CHECK,
        passed=failures.is_empty(),
        metadata={"failure_cases": len(failures), "preview": failures_preview(failures)},
    )


def _reconciliation(outcome: HourIngest) -> dg.AssetCheckResult:
    """Every envelope read is billed once, quarantined, or a dropped identical redelivery."""
    accounted = outcome.usage_rows + outcome.quarantined.height + outcome.duplicates_dropped
    return dg.AssetCheckResult(
        asset_key=c.USAGE_EVENTS,
        check_name=RECONCILED_CHECK,
        passed=accounted == outcome.envelopes_read,
        metadata={
            "envelopes_read": outcome.envelopes_read,
            "usage_rows": outcome.usage_rows,
            "quarantined": outcome.quarantined.height,
            "duplicates_dropped": outcome.duplicates_dropped,
        },
    )


def _refuse_to_empty_a_billed_hour(uri: str, hour: str, options: dict[str, str] | None) -> None:
    """An hour whose raw envelopes are gone (retention) must keep its billed rows."""
    billed = count_hour_rows(uri, hour, options)
    if billed:
        raise dg.Failure(
            description=(
                f"{hour}: the store holds no envelopes but {billed} rows are billed; raw "
                "retention has probably deleted them. Re-price past hours by backfilling "
                "usage_costs only."
            ),
            allow_retries=False,
        )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            c.USAGE_EVENTS,
            group_name=c.INGEST_GROUP,
            description="One row per distinct request_id: tokens, ids and sizes; never content.",
            deps=[c.RAW_ENVELOPES, "deployments"],
            owners=c.OWNERS,
            kinds={"delta", "polars"},
            metadata={"dagster/column_schema": column_schema(tables.USAGE_EVENTS)},
        ),
        dg.AssetSpec(
            c.QUARANTINED_ENVELOPES,
            group_name=c.INGEST_GROUP,
            description="Envelopes that could not be billed, with the reason; never content.",
            deps=[c.RAW_ENVELOPES],
            owners=c.OWNERS,
            kinds={"delta", "polars"},
            metadata={"dagster/column_schema": column_schema(tables.QUARANTINED_ENVELOPES)},
        ),
    ],
    # Partitioned like their assets, so the UI and GraphQL show each check's status per hour.
    check_specs=[
        dg.AssetCheckSpec(
            SCHEMA_CHECK,
            asset=c.USAGE_EVENTS,
            description="Every row matches the usage_events schema (pandera).",
            partitions_def=hourly_partitions,
        ),
        dg.AssetCheckSpec(
            RECONCILED_CHECK,
            asset=c.USAGE_EVENTS,
            description="Every envelope read is billed, quarantined or a dropped redelivery.",
            partitions_def=hourly_partitions,
        ),
        dg.AssetCheckSpec(
            ESTIMATED_CHECK,
            asset=c.USAGE_EVENTS,
            description="At most CHARGEBACK_ESTIMATED_WARN_SHARE of the hour's tokens estimated.",
            partitions_def=hourly_partitions,
        ),
        dg.AssetCheckSpec(
            SCHEMA_CHECK,
            asset=c.QUARANTINED_ENVELOPES,
            description="Every row matches the quarantined_envelopes schema (pandera).",
            partitions_def=hourly_partitions,
        ),
    ],
    partitions_def=hourly_partitions,
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
)
def ingested_envelopes(
    context: dg.AssetExecutionContext, chargeback: ChargebackSettings
) -> Iterator[dg.MaterializeResult]:
    hour = context.partition_key
    with fail_fast_on_bad_setup():
        settings = chargeback.resolve()
        pseudonym_key = settings.require_pseudonym_key()
        deployments = chargeback.reference().deployments
    slices = hour_slices(chargeback.envelope_store().list_hour(hour), SLICE_BYTES)
    read = partial(read_store_slice, settings.store, settings.container)
    options = chargeback.lake_options()
    events_uri = chargeback.table(c.USAGE_EVENTS)
    write_events = partial(
        replace_hour_batches,
        events_uri,
        hour=hour,
        schema=tables.USAGE_EVENTS,
        storage_options=options,
    )
    # Rows wait in a scratch folder (TMPDIR) so memory stays flat however large the hour is;
    # buckets are finished while the usage_events commit streams them out.
    with tempfile.TemporaryDirectory(prefix="chargeback-hour-") as spill:
        bucketed = bucket_slices(read, slices, pseudonym_key, settings.parse_workers, Path(spill))
        if bucketed.envelopes_read == 0:
            _refuse_to_empty_a_billed_hour(events_uri, hour, options)
        outcome = finish_hour(bucketed, hour, deployments, write_events)
    quarantine_uri = chargeback.table(c.QUARANTINED_ENVELOPES)
    earlier = read_hours(quarantine_uri, [hour], tables.QUARANTINED_ENVELOPES, options)
    quarantined = keep_first_detection(outcome.quarantined, earlier, datetime.now(UTC))
    replace_hour(quarantine_uri, quarantined, hour, tables.QUARANTINED_ENVELOPES, options)
    context.log.info(
        f"{hour}: {outcome.envelopes_read} envelopes -> {outcome.usage_rows} usage rows, "
        f"{outcome.quarantined.height} quarantined, {outcome.duplicates_dropped} duplicates"
    )
    yield dg.MaterializeResult(
        asset_key=c.USAGE_EVENTS,
        metadata={
            **usage_events_metadata(outcome.usage_summary, hour),
            "dagster/uri": events_uri,
            "envelopes_read": outcome.envelopes_read,
            "duplicates_dropped": outcome.duplicates_dropped,
            "quarantined": quarantined.height,
        },
        check_results=[
            _schema_check(c.USAGE_EVENTS, outcome.usage_failures),
            _reconciliation(outcome),
            _estimated(outcome.usage_summary),
        ],
    )
    yield dg.MaterializeResult(
        asset_key=c.QUARANTINED_ENVELOPES,
        metadata={**quarantine_metadata(quarantined, hour), "dagster/uri": quarantine_uri},
        check_results=[
            _schema_check(
                c.QUARANTINED_ENVELOPES,
                schema_failures(quarantined, quarantined_envelopes_schema()),
            )
        ],
    )
