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
    description=(
        "At 10 past each hour, run hourly_chargeback for the hour that just ended; late "
        "envelopes are picked up by the late_envelopes sensor."
    ),
    minute_of_hour=10,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

refresh_marts = dg.define_asset_job(
    c.MARTS_JOB,
    selection=dg.AssetSelection.groups(c.MARTS_GROUP),
    description="Rebuild the DuckDB marts from the lake (all SQL models in dbt_like_sql/).",
)

# Marts carry an eager automation condition; this sensor evaluates it, so the marts are rebuilt
# after hourly runs and backfills without a second schedule.
marts_automation = dg.AutomationConditionSensorDefinition(
    "marts_after_hourly_runs",
    target=dg.AssetSelection.groups(c.MARTS_GROUP),
    description=(
        "Rebuilds the marts once hourly runs or backfills have updated the lake tables they "
        "read (eager automation condition)."
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)

reference_observation = dg.AutomationConditionSensorDefinition(
    "reference_observation",
    target=dg.AssetSelection.groups(c.REFERENCE_GROUP, include_sources=True),
    description=(
        "Observes the reference seeds every 15 minutes, so an edited price book, deployment list, "
        "cost-center mapping or budget gets a new data version (shown in the UI)."
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
