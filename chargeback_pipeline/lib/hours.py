"""Hourly partition keys (`YYYY-MM-DD-HH:00`, UTC) and their instants."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"


def hour_key(instant: datetime) -> str:
    """The partition key of the hour holding `instant`."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d-%H:00")


def hour_start(key: str) -> datetime:
    """The first instant of a partition key's hour, UTC."""
    try:
        return datetime.strptime(key, HOUR_KEY_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"'{key}' is not an hourly partition key (YYYY-MM-DD-HH:00)") from None


def hour_keys(start: datetime, end: datetime) -> Iterator[str]:
    """Partition keys of every hour in [start, end)."""
    current = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while current < end:
        yield hour_key(current)
        current += timedelta(hours=1)
