"""The hourly job and schedule (10 past the hour, previous hour); marts follow via automation."""

import dagster as dg

from chargeback_pipeline import constants as c
from chargeback_pipeline.partitions import hourly_partitions

hourly_chargeback = dg.define_asset_job(
    c.HOURLY_JOB,
    selection=dg.AssetSelection.assets(
        c.USAGE_EVENTS, c.QUARANTINED_ENVELOPES, c.USAGE_COSTS, "usage_reconciliation"
    ),
    partitions_def=hourly_partitions,
    description="Ingest, validate, price, allocate and reconcile one hour of envelopes.",
)

hourly_chargeback_schedule = dg.build_schedule_from_partitioned_job(
    hourly_chargeback,
    minute_of_hour=10,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

refresh_marts = dg.define_asset_job(
    c.MARTS_JOB,
    selection=dg.AssetSelection.groups(c.MARTS_GROUP),
    description="Rebuild the DuckDB marts from the lake.",
)

# Marts carry an eager automation condition; this sensor evaluates it, so the marts are rebuilt
# after hourly runs and backfills without a second schedule.
marts_automation = dg.AutomationConditionSensorDefinition(
    "marts_after_hourly_runs",
    target=dg.AssetSelection.groups(c.MARTS_GROUP),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
