"""Daily housekeeping: raw envelopes past retention deleted once billed; Delta compact + vacuum."""

import os
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from chargeback_pipeline import constants as c
from chargeback_pipeline.defs.ingest import RECONCILED_CHECK
from chargeback_pipeline.defs.sensors import IN_FLIGHT, PARTITION_TAG
from chargeback_pipeline.lib.erasure import compact_and_vacuum
from chargeback_pipeline.lib.retention import Ingest, Verdict, cutoff_hour, plan, retention_days
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.store.base import delete_objects

USAGE_EVENTS_KEY = dg.AssetKey(c.USAGE_EVENTS)
LAKE_TABLES = (c.USAGE_EVENTS, c.USAGE_COSTS, c.QUARANTINED_ENVELOPES)
BATCH = 500
"""Hours per instance query: keeps SQL parameter lists short on the first, long catch-up run."""


def utc_now() -> datetime:
    """The job's clock; a function so tests can pin it."""
    return datetime.now(UTC)


def _batches(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _reconciled_targets(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """Storage ids of usage_events materialisations whose reconciliation passed in one run."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    # Match the materialisation the result judged, not just its hour: a rerun must pass anew.
    evaluations = [record.event_log_entry.asset_check_evaluation for record in records]
    return {
        evaluation.target_materialization_data.storage_id
        for evaluation in evaluations
        if evaluation is not None
        and evaluation.passed
        and evaluation.asset_key == USAGE_EVENTS_KEY
        and evaluation.check_name == RECONCILED_CHECK
        and evaluation.target_materialization_data is not None
    }


def latest_ingests(instance: dg.DagsterInstance, hours: Sequence[str]) -> dict[str, Ingest]:
    """Per hour: when the run behind its latest usage_events materialisation began, and whether
    that materialisation passed `envelopes_reconciled`."""
    ingests: dict[str, Ingest] = {}
    for batch in _batches(sorted(hours)):
        latest = instance.get_latest_storage_id_by_partition(
            USAGE_EVENTS_KEY, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(batch)
        )
        if not latest:
            continue
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(USAGE_EVENTS_KEY, storage_ids=list(latest.values())),
            limit=len(latest),
        ).records
        run_ids = sorted({record.run_id for record in records})
        runs = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        # The run's start, not the materialisation's time: the hour was listed after the start.
        started = {
            run.dagster_run.run_id: (
                datetime.fromtimestamp(run.start_time, UTC)
                if run.start_time
                else run.create_timestamp
            )
            for run in runs
        }
        passed = {target for run_id in run_ids for target in _reconciled_targets(instance, run_id)}
        for record in records:
            if record.partition_key and record.run_id in started:
                ingests[record.partition_key] = Ingest(
                    started=started[record.run_id], reconciled=record.storage_id in passed
                )
    return ingests


def ingests_in_flight(instance: dg.DagsterInstance, hours: Collection[str]) -> set[str]:
    """Hours with a queued or running run: it may be reading the objects retention would delete."""
    busy: set[str] = set()
    for batch in _batches(sorted(hours)):
        runs = instance.get_runs(
            filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={PARTITION_TAG: list(batch)})
        )
        busy |= {run.tags[PARTITION_TAG] for run in runs if run.tags.get(PARTITION_TAG)}
    return busy


class RawRetentionConfig(dg.Config):
    retention_days: int | None = Field(
        default=None,
        ge=0,
        description="Days to keep raw envelopes; unset = CHARGEBACK_RAW_RETENTION_DAYS (30).",
    )
    dry_run: bool = Field(default=False, description="Decide and report, delete nothing.")


def _retention_days(config: RawRetentionConfig) -> int:
    if config.retention_days is not None:
        return config.retention_days
    try:
        return retention_days(os.environ)
    except ValueError as error:
        # A bad setting cannot fix itself on retry, and guessing a period could delete too much.
        raise dg.Failure(description=str(error), allow_retries=False) from error


@dg.op(out=dg.Out(dg.Nothing))
def delete_expired_raw_envelopes(
    context: dg.OpExecutionContext, config: RawRetentionConfig, chargeback: ChargebackSettings
) -> dg.Output[None]:
    """Delete the raw objects of hours past retention that were ingested and reconciled."""
    days = _retention_days(config)
    cutoff = cutoff_hour(utc_now(), days)
    store = chargeback.envelope_store()
    hours = store.list_hours_before(cutoff)
    listings = {hour: store.list_hour(hour) for hour in hours}
    decided = plan(
        listings,
        latest_ingests(context.instance, hours),
        cutoff,
        ingests_in_flight(context.instance, hours),
    )
    names = [item.name for hour in decided.deletable for item in listings[hour]]
    deleted = 0 if config.dry_run else delete_objects(store, names)
    counts = decided.counts()
    context.log.info(
        f"retention {days} days (hours before {cutoff}): {len(hours)} hours listed; "
        f"{'would delete' if config.dry_run else 'deleted'} {len(names)} objects of "
        f"{len(decided.deletable)} hours; kept {counts}"
    )
    for reason in (Verdict.NOT_INGESTED, Verdict.NOT_RECONCILED, Verdict.CHANGED_AFTER_INGEST):
        if kept := decided.kept(reason):
            # Expired yet kept: these need a (re)materialisation before retention can act.
            context.log.warning(
                f"kept {len(kept)} expired hours ({reason}): {', '.join(kept[:10])}"
            )
    return dg.Output(
        None,
        metadata={
            "retention_days": days,
            "cutoff_hour": cutoff,
            "hours_listed": len(hours),
            "hours_deleted": 0 if config.dry_run else len(decided.deletable),
            "objects_deleted": deleted,
            "dry_run": config.dry_run,
            **{f"hours_{name}": count for name, count in counts.items() if name != "delete"},
        },
    )


@dg.job(
    name=c.RAW_RETENTION_JOB,
    description="Delete raw envelopes past CHARGEBACK_RAW_RETENTION_DAYS once billed.",
    tags={"chargeback/maintenance": "retention"},
)
def raw_retention() -> None:
    delete_expired_raw_envelopes()


raw_retention_schedule = dg.ScheduleDefinition(
    name=c.RAW_RETENTION_SCHEDULE,
    job=raw_retention,
    description="Daily at 02:30 UTC: delete raw envelopes past retention that were billed.",
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


class LakeMaintenanceConfig(dg.Config):
    vacuum_retention_hours: int = Field(
        default=168,
        ge=0,
        description="Vacuum files unreferenced for this long; below the table's own retention "
        "(7 days by default) the run fails rather than break time travel.",
    )


@dg.op(out=dg.Out(dg.Nothing))
def compact_and_vacuum_lake(
    context: dg.OpExecutionContext, config: LakeMaintenanceConfig, chargeback: ChargebackSettings
) -> dg.Output[None]:
    """Compact small files, vacuum superseded ones and expire old log entries, per table."""
    options = chargeback.lake_options()
    metadata: dict[str, int] = {}
    for name in LAKE_TABLES:
        done = compact_and_vacuum(chargeback.table(name), config.vacuum_retention_hours, options)
        if done is None:
            context.log.info(f"{name}: no table yet")
            continue
        context.log.info(
            f"{name}: compacted {done.files_compacted} files into {done.files_written}; "
            f"vacuum removed {done.files_vacuumed} files"
        )
        metadata[f"{name}_files_compacted"] = done.files_compacted
        metadata[f"{name}_files_vacuumed"] = done.files_vacuumed
    return dg.Output(None, metadata=metadata)


@dg.job(
    name=c.LAKE_MAINTENANCE_JOB,
    description="Compact and vacuum the lake's Delta tables.",
    tags={"chargeback/maintenance": "lake"},
)
def lake_maintenance() -> None:
    compact_and_vacuum_lake()


lake_maintenance_schedule = dg.ScheduleDefinition(
    name=c.LAKE_MAINTENANCE_SCHEDULE,
    job=lake_maintenance,
    description="Daily at 03:00 UTC: compact and vacuum the lake's Delta tables.",
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
