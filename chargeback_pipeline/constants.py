"""Names shared by the Dagster wiring: tables, groups, jobs."""

USAGE_EVENTS = "usage_events"
USAGE_COSTS = "usage_costs"
QUARANTINED_ENVELOPES = "quarantined_envelopes"
RAW_ENVELOPES = "raw_envelopes"

REFERENCE_GROUP = "reference"
INGEST_GROUP = "ingest"
COSTS_GROUP = "costs"
MARTS_GROUP = "marts"
OWNERS = ["team:finops-platform"]

HOURLY_JOB = "hourly_chargeback"
MARTS_JOB = "refresh_marts"
LATE_ARRIVAL_SENSOR = "late_envelopes"

RAW_RETENTION_JOB = "raw_retention"
RAW_RETENTION_SCHEDULE = "raw_retention_daily"
LAKE_MAINTENANCE_JOB = "lake_maintenance"
LAKE_MAINTENANCE_SCHEDULE = "lake_maintenance_daily"
