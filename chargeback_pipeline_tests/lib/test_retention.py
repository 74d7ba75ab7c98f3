"""Retention decisions: only expired, ingested, reconciled and unchanged hours are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chargeback_pipeline.lib.retention import (
    Ingest,
    Verdict,
    cutoff_hour,
    plan,
    retention_days,
    verdict,
)
from chargeback_pipeline.store.base import StoredObject

NOW = datetime(2026, 11, 27, 21, 23, tzinfo=UTC)
CUTOFF = "2026-10-28-21:00"
OLD = "2026-10-01-05:00"
WRITTEN = datetime(2026, 10, 1, 5, 59, tzinfo=UTC)
INGESTED = datetime(2026, 10, 1, 6, 10, 30, 250_000, tzinfo=UTC)


def objects(*modified: datetime) -> list[StoredObject]:
    return [StoredObject(f"raw/2026/10/01/05/{n}.ndjson", 10, m) for n, m in enumerate(modified)]


def good_ingest(started: datetime = INGESTED) -> Ingest:
    return Ingest(started=started, reconciled=True)


def test_default_retention_is_thirty_days():
    assert retention_days({}) == 30
    assert retention_days({"CHARGEBACK_RAW_RETENTION_DAYS": ""}) == 30


def test_retention_days_come_from_the_environment():
    assert retention_days({"CHARGEBACK_RAW_RETENTION_DAYS": "90"}) == 90
    assert retention_days({"CHARGEBACK_RAW_RETENTION_DAYS": "0"}) == 0


@pytest.mark.parametrize("value", ["-1", "thirty", "1.5"])
def test_unusable_retention_is_refused_with_the_variable_named(value):
    with pytest.raises(ValueError, match="CHARGEBACK_RAW_RETENTION_DAYS"):
        retention_days({"CHARGEBACK_RAW_RETENTION_DAYS": value})


def test_cutoff_is_the_hour_retention_days_ago():
    assert cutoff_hour(NOW, 30) == CUTOFF
    assert cutoff_hour(NOW, 0) == "2026-11-27-21:00"


def test_every_hour_before_the_cutoff_ended_at_least_retention_days_ago():
    cutoff = cutoff_hour(NOW, 30)
    last_expired_end = datetime.strptime(cutoff, "%Y-%m-%d-%H:00").replace(tzinfo=UTC)
    assert last_expired_end <= NOW - timedelta(days=30)


def test_expired_reconciled_unchanged_hour_is_deleted():
    assert verdict(OLD, objects(WRITTEN), good_ingest(), CUTOFF) is Verdict.DELETE


def test_hours_at_or_after_the_cutoff_are_kept():
    assert verdict(CUTOFF, objects(WRITTEN), good_ingest(), CUTOFF) is Verdict.NOT_EXPIRED
    assert verdict("2026-11-01-00:00", objects(WRITTEN), good_ingest(), CUTOFF) is (
        Verdict.NOT_EXPIRED
    )


def test_hour_never_ingested_is_kept():
    assert verdict(OLD, objects(WRITTEN), None, CUTOFF) is Verdict.NOT_INGESTED


def test_hour_whose_reconciliation_failed_is_kept():
    failed = Ingest(started=INGESTED, reconciled=False)
    assert verdict(OLD, objects(WRITTEN), failed, CUTOFF) is Verdict.NOT_RECONCILED


def test_hour_with_an_object_changed_after_ingest_began_is_kept():
    late = INGESTED + timedelta(minutes=3)
    assert verdict(OLD, objects(WRITTEN, late), good_ingest(), CUTOFF) is (
        Verdict.CHANGED_AFTER_INGEST
    )


def test_an_object_stamped_in_the_ingests_first_second_counts_as_changed():
    # Blob Storage reports whole seconds: 06:10:30 may be 06:10:30.9, after the run began.
    same_second = INGESTED.replace(microsecond=0)
    assert verdict(OLD, objects(same_second), good_ingest(), CUTOFF) is (
        Verdict.CHANGED_AFTER_INGEST
    )
    just_before = same_second - timedelta(microseconds=1)
    assert verdict(OLD, objects(just_before), good_ingest(), CUTOFF) is Verdict.DELETE


def test_hour_with_an_ingest_in_flight_is_kept():
    kept = verdict(OLD, objects(WRITTEN), good_ingest(), CUTOFF, in_flight=True)
    assert kept is Verdict.INGEST_IN_FLIGHT


def test_hour_without_objects_has_nothing_to_delete():
    assert verdict(OLD, [], good_ingest(), CUTOFF) is Verdict.EMPTY


def test_plan_sorts_hours_into_deleted_and_kept_with_counts():
    listings = {
        "2026-10-01-05:00": objects(WRITTEN),
        "2026-10-01-06:00": objects(WRITTEN),
        "2026-10-01-07:00": objects(WRITTEN),
        "2026-10-01-08:00": objects(WRITTEN),
        "2026-10-01-09:00": objects(WRITTEN),
    }
    ingests = {
        "2026-10-01-05:00": good_ingest(),
        "2026-10-01-07:00": Ingest(started=INGESTED, reconciled=False),
        "2026-10-01-08:00": good_ingest(started=WRITTEN - timedelta(hours=1)),
        "2026-10-01-09:00": good_ingest(),
    }
    decided = plan(listings, ingests, CUTOFF, in_flight={"2026-10-01-09:00"})
    assert decided.deletable == ["2026-10-01-05:00"]
    assert decided.kept(Verdict.NOT_INGESTED) == ["2026-10-01-06:00"]
    assert decided.counts() == {
        "delete": 1,
        "not_expired": 0,
        "empty": 0,
        "not_ingested": 1,
        "ingest_in_flight": 1,
        "not_reconciled": 1,
        "changed_after_ingest": 1,
    }


def test_plan_of_nothing_deletes_nothing():
    assert plan({}, {}, CUTOFF).deletable == []
