"""Late-arrival sensor: re-run the hourly job for hours whose envelopes landed after the run."""

import os
from collections.abc import Collection
from datetime import UTC, datetime

import dagster as dg

from chargeback_pipeline import constants as c
from chargeback_pipeline.lib.late_arrivals import (
    dump_cursor,
    load_cursor,
    lookback_hours,
    run_key,
    scan,
    window,
)
from chargeback_pipeline.resources import ChargebackSettings

PARTITION_TAG = "dagster/partition"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def utc_now() -> datetime:
    """The tick's clock; a function so tests can pin it."""
    return datetime.now(UTC)


def _already_ingested(instance: dg.DagsterInstance, hours: Collection[str]) -> set[str]:
    """Hours with a usage_events materialisation or a run in flight that may have missed them."""
    done = instance.get_materialized_partitions(dg.AssetKey(c.USAGE_EVENTS)) & set(hours)
    pending = sorted(set(hours) - done)
    if not pending:
        return done
    # A run that listed the store before the envelope landed would otherwise lose it: the next
    # tick sees the hour materialised but no longer changed.
    running = instance.get_runs(
        filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={PARTITION_TAG: pending})
    )
    return done | {run.tags[PARTITION_TAG] for run in running if run.tags.get(PARTITION_TAG)}


@dg.sensor(
    job_name=c.HOURLY_JOB,
    name=c.LATE_ARRIVAL_SENSOR,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Re-materialises hours that received envelopes after they were ingested "
        "(window: CHARGEBACK_LATE_LOOKBACK_HOURS, default 48)."
    ),
)
def late_envelopes(
    context: dg.SensorEvaluationContext, chargeback: ChargebackSettings
) -> dg.SensorResult:
    store = chargeback.envelope_store()
    # List first, ask the instance second: a run finishing in between is then seen as done and
    # re-run, never taken as having read an envelope it missed.
    listings = {
        hour: store.list_hour(hour) for hour in window(utc_now(), lookback_hours(os.environ))
    }
    previous = load_cursor(context.cursor)
    result = scan(previous, listings)
    cursor = dump_cursor(result.cursor)
    if previous is None:
        # Without a baseline every stored hour would look new and re-run at once; envelopes that
        # arrived before the first tick are left to the schedule or a backfill.
        return dg.SensorResult(
            skip_reason=f"first tick: baseline of {len(result.cursor.hours)} hours recorded",
            cursor=cursor,
        )
    if not result.changed:
        return dg.SensorResult(skip_reason="no new envelopes in ingested hours", cursor=cursor)
    # Hours not ingested yet are the schedule's; they stay in the cursor so they are not news later.
    ingested = _already_ingested(context.instance, result.changed)
    requests = [
        dg.RunRequest(partition_key=hour, run_key=run_key(hour, state))
        for hour, state in sorted(result.changed.items())
        if hour in ingested
    ]
    if not requests:
        return dg.SensorResult(
            skip_reason="new envelopes only in hours not ingested yet", cursor=cursor
        )
    context.log.info(f"late envelopes in {', '.join(r.partition_key or '' for r in requests)}")
    return dg.SensorResult(run_requests=requests, cursor=cursor)
