"""Raw envelope retention: which hours may be deleted, decided without I/O. An hour goes only
when it is past retention, its latest ingest reconciled, and nothing in it changed since that
ingest began; anything else is kept, because a lost envelope is lost money."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from chargeback_pipeline.lib.hours import hour_key
from chargeback_pipeline.lib.late_arrivals import Listed

RETENTION_ENV = "CHARGEBACK_RAW_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30


class Verdict(StrEnum):
    """What retention does with one hour, and why."""

    DELETE = "delete"
    NOT_EXPIRED = "not_expired"
    EMPTY = "empty"
    NOT_INGESTED = "not_ingested"
    INGEST_IN_FLIGHT = "ingest_in_flight"
    NOT_RECONCILED = "not_reconciled"
    CHANGED_AFTER_INGEST = "changed_after_ingest"


@dataclass(frozen=True)
class Ingest:
    """An hour's latest `usage_events` materialisation, as the Dagster instance recorded it."""

    started: datetime
    """When the run that read the hour began: objects modified later may not have been read."""
    reconciled: bool
    """Whether that materialisation's `envelopes_reconciled` check passed."""


@dataclass(frozen=True)
class RetentionPlan:
    """A verdict per listed hour."""

    verdicts: Mapping[str, Verdict]

    @property
    def deletable(self) -> list[str]:
        return sorted(hour for hour, verdict in self.verdicts.items() if verdict is Verdict.DELETE)

    def kept(self, verdict: Verdict) -> list[str]:
        """The hours kept for one reason, oldest first."""
        return sorted(hour for hour, found in self.verdicts.items() if found is verdict)

    def counts(self) -> dict[str, int]:
        """Hours per verdict, every verdict present (zero included) for stable reporting."""
        return {verdict.value: len(self.kept(verdict)) for verdict in Verdict}


def retention_days(env: Mapping[str, str]) -> int:
    """Days raw envelopes are kept, from CHARGEBACK_RAW_RETENTION_DAYS (default 30)."""
    value = env.get(RETENTION_ENV) or str(DEFAULT_RETENTION_DAYS)
    try:
        days = int(value)
    except ValueError:
        days = -1
    if days < 0:
        raise ValueError(f"{RETENTION_ENV}={value!r}: expected a whole number of days >= 0")
    return days


def cutoff_hour(now: datetime, days: int) -> str:
    """The first hour still inside the retention period; every hour before it has expired."""
    # An hour before this one ended at or before now - days, so all of it is past retention.
    return hour_key(now - timedelta(days=days))


def verdict(
    hour: str,
    objects: Sequence[Listed],
    ingest: Ingest | None,
    cutoff: str,
    in_flight: bool = False,
) -> Verdict:
    """The verdict for one hour, from its listing and what the instance knows about it."""
    # Keys are fixed-width `YYYY-MM-DD-HH:00`, so string order is time order.
    if hour >= cutoff:
        return Verdict.NOT_EXPIRED
    if not objects:
        return Verdict.EMPTY
    if in_flight:
        return Verdict.INGEST_IN_FLIGHT
    if ingest is None:
        return Verdict.NOT_INGESTED
    if not ingest.reconciled:
        return Verdict.NOT_RECONCILED
    # Blob Storage stamps whole seconds: an object stamped in the run's first second may have
    # changed after the run listed the hour, so that second counts as after.
    since = ingest.started.replace(microsecond=0)
    if any(item.modified >= since for item in objects):
        return Verdict.CHANGED_AFTER_INGEST
    return Verdict.DELETE


def plan(
    listings: Mapping[str, Sequence[Listed]],
    ingests: Mapping[str, Ingest],
    cutoff: str,
    in_flight: Collection[str] = (),
) -> RetentionPlan:
    """Verdicts for every listed hour."""
    return RetentionPlan(
        {
            hour: verdict(hour, objects, ingests.get(hour), cutoff, hour in in_flight)
            for hour, objects in listings.items()
        }
    )
