"""Retention and lake maintenance jobs on a real instance, store and lake in tmp_path."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import orjson
import polars as pl
import pytest

from chargeback_pipeline import constants as c
from chargeback_pipeline.definitions import defs
from chargeback_pipeline.defs import ingest
from chargeback_pipeline.defs.costs import usage_costs
from chargeback_pipeline.defs.ingest import ingested_envelopes
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import EnvelopeStore, open_store
from chargeback_pipeline_tests.conftest import EXAMPLES

H12, H13, H14, H15 = (f"2026-11-27-{hour}:00" for hour in ("12", "13", "14", "15"))
TABLES = (c.USAGE_EVENTS, c.USAGE_COSTS, c.QUARANTINED_ENVELOPES)
RETAIN_NOTHING = {"ops": {"delete_expired_raw_envelopes": {"config": {"retention_days": 0}}}}


@pytest.fixture
def instance(chargeback_env) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as dagster_instance:
        yield dagster_instance


def store() -> EnvelopeStore:
    settings = load_settings()
    return open_store(settings.store, settings.container)


def forward(raw: bytes) -> None:
    result = forward_envelope(raw, store(), load_settings().max_envelope_bytes)
    assert result.status == 202, result.message


def forward_examples() -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        forward(orjson.dumps(json.loads(path.read_text())))


def forward_call(hour: str, request_id: str) -> None:
    envelope = json.loads((EXAMPLES / "chat_completion.json").read_text())
    envelope["request_id"] = request_id
    envelope["timestamp"] = f"{hour[:10]}T{hour[11:13]}:20:00.000Z"
    forward(orjson.dumps(envelope))


def written_a_minute_ago() -> None:
    """Backdate every stored object: retention treats a write in the ingest's first second as
    later than the ingest (Blob Storage stamps whole seconds), and tests run within one."""
    earlier = time.time() - 60
    for path in Path(load_settings().store).rglob("*.*json"):
        os.utime(path, (earlier, earlier))


def materialise(instance: dg.DagsterInstance, hour: str) -> None:
    result = dg.materialize(
        [ingested_envelopes, usage_costs],
        partition_key=hour,
        resources={"chargeback": ChargebackSettings()},
        instance=instance,
    )
    assert result.success


def run_job(
    instance: dg.DagsterInstance, name: str, run_config: dict[str, object] | None = None
) -> dg.ExecuteInProcessResult:
    job = defs().resolve_job_def(name)
    return job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)


def step_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (output,) = [event for event in result.all_events if event.is_successful_output]
    return {key: value.value for key, value in output.step_output_data.metadata.items()}


def raw_hours() -> list[str]:
    return store().list_hours_before("2099-01-01-00:00")


def table(name: str) -> pl.DataFrame:
    return pl.read_delta(str(Path(load_settings().lake) / name)).sort(pl.all())


def test_retention_deletes_only_ingested_reconciled_unchanged_hours(instance, monkeypatch):
    forward_examples()
    forward_call(H12, "never-ingested")
    forward_call(H14, "changed-after-ingest")
    forward_call(H15, "reconciliation-failed")
    written_a_minute_ago()
    materialise(instance, H13)
    materialise(instance, H14)
    forward_call(H14, "arrived-after-ingest")
    failing = ingest._reconciliation

    def unreconciled(outcome: object) -> dg.AssetCheckResult:
        passed = failing(outcome)
        return dg.AssetCheckResult(
            asset_key=passed.asset_key, check_name=passed.check_name, passed=False
        )

    with monkeypatch.context() as patch:
        patch.setattr(ingest, "_reconciliation", unreconciled)
        materialise(instance, H15)
    events_before = table(c.USAGE_EVENTS)

    result = run_job(instance, c.RAW_RETENTION_JOB, RETAIN_NOTHING)

    assert result.success
    assert raw_hours() == [H12, H14, H15]
    assert store().list_hour(H13) == []
    found = step_metadata(result)
    assert found["hours_deleted"] == 1
    assert found["objects_deleted"] == 1
    assert found["hours_not_ingested"] == 1
    assert found["hours_changed_after_ingest"] == 1
    assert found["hours_not_reconciled"] == 1
    assert table(c.USAGE_EVENTS).equals(events_before)


def test_a_rerun_after_the_change_lets_retention_delete_the_hour(instance):
    forward_call(H14, "first")
    written_a_minute_ago()
    materialise(instance, H14)
    forward_call(H14, "late")
    assert run_job(instance, c.RAW_RETENTION_JOB, RETAIN_NOTHING).success
    assert raw_hours() == [H14]
    written_a_minute_ago()
    materialise(instance, H14)
    assert run_job(instance, c.RAW_RETENTION_JOB, RETAIN_NOTHING).success
    assert raw_hours() == []
    assert table(c.USAGE_EVENTS)["request_id"].sort().to_list() == ["first", "late"]


def test_an_hour_being_re_ingested_is_kept(instance):
    forward_examples()
    written_a_minute_ago()
    materialise(instance, H13)
    instance.add_run(
        dg.DagsterRun(
            job_name=c.HOURLY_JOB,
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": H13},
        )
    )
    result = run_job(instance, c.RAW_RETENTION_JOB, RETAIN_NOTHING)
    assert step_metadata(result)["hours_ingest_in_flight"] == 1
    assert raw_hours() == [H13]


def test_default_retention_keeps_recent_hours_and_dry_run_deletes_nothing(instance, monkeypatch):
    forward_examples()
    materialise(instance, H13)
    monkeypatch.setenv("CHARGEBACK_RAW_RETENTION_DAYS", "100000")
    kept = run_job(instance, c.RAW_RETENTION_JOB)
    assert kept.success
    assert step_metadata(kept)["hours_listed"] == 0
    dry = {
        "ops": {"delete_expired_raw_envelopes": {"config": {"retention_days": 0, "dry_run": True}}}
    }
    assert run_job(instance, c.RAW_RETENTION_JOB, dry).success
    assert raw_hours() == [H13]


def test_unusable_retention_setting_fails_without_deleting(instance, monkeypatch):
    forward_examples()
    materialise(instance, H13)
    monkeypatch.setenv("CHARGEBACK_RAW_RETENTION_DAYS", "-3")
    result = run_job(instance, c.RAW_RETENTION_JOB)
    assert not result.success
    assert raw_hours() == [H13]


def test_lake_maintenance_keeps_every_table_equal_in_content(instance):
    forward_examples()
    forward_call(H14, "other-hour")
    for hour in (H13, H14, H13):
        materialise(instance, hour)
    before = {name: table(name) for name in TABLES}

    result = run_job(instance, c.LAKE_MAINTENANCE_JOB)

    assert result.success
    for name in TABLES:
        assert table(name).equals(before[name]), name
    found = step_metadata(result)
    assert found[f"{c.USAGE_EVENTS}_files_vacuumed"] == 0


def test_lake_maintenance_refuses_to_vacuum_inside_the_tables_retention(instance):
    forward_examples()
    materialise(instance, H13)
    config = {"ops": {"compact_and_vacuum_lake": {"config": {"vacuum_retention_hours": 1}}}}
    assert not run_job(instance, c.LAKE_MAINTENANCE_JOB, config).success


def test_maintenance_schedules_run_daily_in_utc():
    schedules = {s.name: s for s in defs().get_repository_def().schedule_defs}
    retention = schedules[c.RAW_RETENTION_SCHEDULE]
    lake = schedules[c.LAKE_MAINTENANCE_SCHEDULE]
    assert (retention.cron_schedule, retention.execution_timezone) == ("30 2 * * *", "UTC")
    assert (lake.cron_schedule, lake.execution_timezone) == ("0 3 * * *", "UTC")
    assert retention.job_name == c.RAW_RETENTION_JOB
    assert lake.job_name == c.LAKE_MAINTENANCE_JOB
