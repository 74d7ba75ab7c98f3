"""The late-arrival sensor on a real local store and instance: which hours it asks to re-run."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import orjson
import pytest

from chargeback_pipeline import constants as c
from chargeback_pipeline.definitions import defs
from chargeback_pipeline.defs import sensors
from chargeback_pipeline.defs.costs import usage_costs
from chargeback_pipeline.defs.ingest import ingested_envelopes
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.lib.late_arrivals import load_cursor
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store
from chargeback_pipeline_tests.conftest import EXAMPLES

H12, H13 = "2026-11-27-12:00", "2026-11-27-13:00"
NOW = datetime(2026, 11, 27, 20, 30, tzinfo=UTC)


@pytest.fixture
def instance(chargeback_env, monkeypatch):
    """A fresh instance, the store and lake in tmp_path, and the sensor's clock pinned to NOW."""
    monkeypatch.setattr(sensors, "utc_now", lambda: NOW)
    monkeypatch.delenv("CHARGEBACK_LATE_LOOKBACK_HOURS", raising=False)
    with dg.instance_for_test() as test_instance:
        yield test_instance


def forward(raw: bytes) -> None:
    settings = load_settings()
    result = forward_envelope(raw, open_store(settings.store), settings.max_envelope_bytes)
    assert result.status == 202, result.message


def forward_examples() -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        forward(orjson.dumps(json.loads(path.read_text())))


def forward_late(hour: str, request_id: str) -> None:
    """One more chat completion whose timestamp falls in `hour`."""
    envelope = json.loads((EXAMPLES / "chat_completion.json").read_text())
    envelope["request_id"] = request_id
    envelope["timestamp"] = f"{hour[:10]}T{hour[11:13]}:40:00.000Z"
    forward(orjson.dumps(envelope))


def materialise(instance: dg.DagsterInstance, hour: str) -> None:
    result = dg.materialize(
        [ingested_envelopes, usage_costs],
        partition_key=hour,
        resources={"chargeback": ChargebackSettings()},
        instance=instance,
    )
    assert result.success


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"chargeback": ChargebackSettings()},
        definitions=defs(),
    )
    result = sensors.late_envelopes(context)
    assert isinstance(result, dg.SensorResult)
    assert result.cursor is not None
    return result


def requested(result: dg.SensorResult) -> list[str]:
    return [request.partition_key or "" for request in result.run_requests or []]


def test_first_tick_records_the_baseline_and_requests_nothing(instance):
    forward_examples()
    materialise(instance, H13)
    result = tick(instance, None)
    assert requested(result) == []
    assert result.skip_reason is not None
    assert "first tick" in (result.skip_reason.skip_message or "")
    cursor = load_cursor(result.cursor)
    assert cursor is not None
    assert set(cursor.hours) == {H13}


def test_new_envelope_in_a_materialised_hour_requests_exactly_that_hour(instance):
    forward_examples()
    materialise(instance, H13)
    baseline = tick(instance, None).cursor
    forward_late(H13, "late-13")
    result = tick(instance, baseline)
    assert requested(result) == [H13]
    cursor = load_cursor(result.cursor)
    assert cursor is not None
    (request,) = result.run_requests or []
    assert request.run_key == f"late:{H13}:{cursor.hours[H13].fingerprint}"
    assert requested(tick(instance, result.cursor)) == []


def test_requests_resolve_to_partitions_of_the_hourly_job(instance):
    forward_examples()
    materialise(instance, H13)
    baseline = tick(instance, None).cursor
    forward_late(H13, "late-13")
    context = dg.build_sensor_context(
        instance=instance,
        cursor=baseline,
        resources={"chargeback": ChargebackSettings()},
        definitions=defs(),
    )
    (request,) = sensors.late_envelopes.evaluate_tick(context).run_requests or []
    assert request.partition_key == H13
    assert request.tags["dagster/partition"] == H13


def test_new_envelope_in_an_hour_never_materialised_is_left_to_the_schedule(instance):
    forward_examples()
    materialise(instance, H13)
    baseline = tick(instance, None).cursor
    forward_late(H12, "late-12")
    result = tick(instance, baseline)
    assert requested(result) == []
    cursor = load_cursor(result.cursor)
    assert cursor is not None
    assert set(cursor.hours) == {H12, H13}
    # Once the schedule has run it, the envelope it already read is not news.
    materialise(instance, H12)
    assert requested(tick(instance, result.cursor)) == []


def test_nothing_changed_requests_nothing(instance):
    forward_examples()
    materialise(instance, H13)
    baseline = tick(instance, None).cursor
    result = tick(instance, baseline)
    assert requested(result) == []
    assert result.skip_reason is not None
    assert result.cursor == baseline


def test_late_envelopes_in_two_materialised_hours_request_both(instance):
    forward_examples()
    forward_late(H12, "on-time-12")
    materialise(instance, H12)
    materialise(instance, H13)
    baseline = tick(instance, None).cursor
    forward_late(H12, "late-12")
    forward_late(H13, "late-13")
    result = tick(instance, baseline)
    assert requested(result) == [H12, H13]
    assert len({request.run_key for request in result.run_requests or []}) == 2


def test_hour_being_ingested_when_the_envelope_lands_is_rerun(instance):
    forward_examples()
    baseline = tick(instance, None).cursor
    # The scheduled run for 13:00 has listed the store but not materialised yet.
    run = dg.DagsterRun(
        job_name=c.HOURLY_JOB, status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": H13}
    )
    instance.add_run(run)
    forward_late(H13, "late-13")
    assert requested(tick(instance, baseline)) == [H13]


def test_cursor_stays_inside_the_lookback_window(instance, monkeypatch):
    forward_examples()
    forward_late("2026-11-27-19:00", "recent")
    monkeypatch.setenv("CHARGEBACK_LATE_LOOKBACK_HOURS", "3")
    cursor = load_cursor(tick(instance, None).cursor)
    assert cursor is not None
    assert cursor.since == "2026-11-27-17:00"
    assert set(cursor.hours) == {"2026-11-27-19:00"}


def test_long_lookback_ticks_quickly(instance, monkeypatch):
    forward_examples()
    monkeypatch.setenv("CHARGEBACK_LATE_LOOKBACK_HOURS", str(24 * 400))
    started = datetime.now(UTC)
    cursor = load_cursor(tick(instance, None).cursor)
    assert (datetime.now(UTC) - started).total_seconds() < 5
    assert cursor is not None
    assert set(cursor.hours) == {H13}


def test_sensor_is_loaded_running_and_targets_the_hourly_job():
    sensor = defs().get_repository_def().get_sensor_def(c.LATE_ARRIVAL_SENSOR)
    assert sensor.job_name == c.HOURLY_JOB
    assert sensor.minimum_interval_seconds == 120
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
