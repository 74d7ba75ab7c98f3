"""Hourly UTC partitions: the key is the hour an envelope's timestamp falls in."""

import dagster as dg

HOURLY_START = "2025-01-01-00:00"

hourly_partitions = dg.HourlyPartitionsDefinition(start_date=HOURLY_START, timezone="UTC")
