"""What the Dagster UI shows of an hour: sums equal to the Delta tables, per-hour checks, seeds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from decimal import Decimal

import dagster as dg
import orjson
import polars as pl
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from chargeback_pipeline.definitions import defs
from chargeback_pipeline.defs.costs import usage_costs
from chargeback_pipeline.defs.ingest import ingested_envelopes
from chargeback_pipeline.defs.reference import MISSING_VERSION, budgets
from chargeback_pipeline.lib.reference import content_version
from chargeback_pipeline.partitions import hourly_partitions
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline_tests.conftest import EXAMPLES, SEEDS
from chargeback_pipeline_tests.defs.test_assets import HOUR, forward, forward_examples, table

HOURLY_ASSETS = ("usage_events", "quarantined_envelopes", "usage_costs")


@pytest.fixture(scope="module")
def hour_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.ExecuteInProcessResult]:
    """The contract's examples, one call with estimated tokens and one envelope to quarantine,
    materialised for HOUR once: the tests only read what the run recorded."""
    root = tmp_path_factory.mktemp("ui_hour")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "CHARGEBACK_STORE": root / "store",
            "CHARGEBACK_LAKE": root / "lake",
            "CHARGEBACK_DUCKDB": root / "marts.duckdb",
            "CHARGEBACK_PSEUDONYM_KEY": "test-pseudonym-key",
            "CHARGEBACK_ESTIMATED_WARN_SHARE": "0",  # so one check fails, per hour too
            "DAGSTER_HOME": home,
        }.items():
            patch.setenv(name, str(value))
        patch.delenv("CHARGEBACK_REFERENCE_DIR", raising=False)
        forward_examples()
        unmetered = json.loads((EXAMPLES / "chat_stream_passthrough.json").read_text())
        unmetered["request_id"] = "no-usage-anywhere"
        unmetered["gateway_tokens"] = None  # so its tokens are estimated from the prompt
        forward(orjson.dumps(unmetered))
        broken = json.loads((EXAMPLES / "chat_completion.json").read_text())
        broken["request_id"] = "bad-one"
        broken["elapsed_ms"] = "not a number"
        forward(orjson.dumps(broken))
        with dg.DagsterInstance.get() as instance:
            result = dg.materialize(
                [ingested_envelopes, usage_costs],
                partition_key=HOUR,
                resources={"chargeback": ChargebackSettings()},
                instance=instance,
            )
        assert result.success
        yield result


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)
    ]
    return {key: value.value for key, value in event.materialization.metadata.items()}


def token_sums(frame: pl.DataFrame) -> dict[str, int]:
    return {
        f"tokens_{name}": sum(frame[f"{name}_tokens"].to_list())
        for name in ("prompt", "cached", "completion", "total")
    }


def test_materialisations_report_the_hours_exact_sums(hour_run):
    events = table("usage_events").filter(pl.col("hour") == HOUR)
    costs = table("usage_costs").filter(pl.col("hour") == HOUR)
    quarantined = table("quarantined_envelopes").filter(pl.col("hour") == HOUR)

    shown = metadata_of(hour_run, "usage_events")
    assert shown["dagster/partition_row_count"] == events.height == 7
    assert {k: shown[k] for k in token_sums(events)} == token_sums(events)
    assert shown["tokens_total"] > 0 and shown["tokens_cached"] > 0
    assert shown["quarantined"] == quarantined.height == 1
    estimated = events.filter(pl.col("token_source") == "estimated")["total_tokens"].sum()
    assert estimated > 0
    assert shown["tokens_estimated_share"] == estimated / shown["tokens_total"]

    shown = metadata_of(hour_run, "usage_costs")
    assert shown["dagster/partition_row_count"] == costs.height == 7
    assert {k: shown[k] for k in token_sums(costs)} == token_sums(costs)
    exact = sum(costs.filter(pl.col("currency") == "USD")["total_cost"].to_list(), Decimal(0))
    assert exact > 0
    assert shown["cost_total_usd"] == f"{exact:f}"
    assert Decimal(shown["cost_total_usd"]) == exact
    assert shown["cost_total_usd_approx"] == pytest.approx(float(exact))

    shown = metadata_of(hour_run, "quarantined_envelopes")
    assert shown["quarantined"] == shown["dagster/partition_row_count"] == quarantined.height
    assert shown["quarantine_reasons"] == {"wrong_type": 1}


def test_previews_list_top_spenders_with_exact_numbers(hour_run):
    costs = table("usage_costs").filter(pl.col("hour") == HOUR)
    preview = str(metadata_of(hour_run, "usage_costs")["preview"])
    top = (
        costs.group_by("cost_center")
        .agg(pl.len(), pl.col("total_tokens").sum(), pl.col("total_cost").sum())
        .sort("total_cost", descending=True, nulls_last=True)
        .row(0)
    )
    center, requests, tokens, cost = top
    assert f"| {center} | {requests} | {tokens} | {cost:f} | USD |" in preview
    assert "Top models" in preview
    for asset in HOURLY_ASSETS:
        text = str(metadata_of(hour_run, asset)["preview"])
        assert HOUR in text
        assert "bad-one" not in text and "not a number" not in text
    assert "| wrong_type | 1 |" in str(metadata_of(hour_run, "quarantined_envelopes")["preview"])


def test_hourly_checks_are_partitioned_and_results_name_the_hour(hour_run):
    evaluations = hour_run.get_asset_check_evaluations()
    checked = {e.asset_key.to_user_string() for e in evaluations}
    assert checked == set(HOURLY_ASSETS)
    assert len(evaluations) == 7
    assert {e.partition for e in evaluations} == {HOUR}
    failed = [(e.check_name, e.severity) for e in evaluations if not e.passed]
    assert failed == [("estimated_share", dg.AssetCheckSeverity.WARN)]

    keys = [dg.AssetCheckKey(dg.AssetKey(e.asset_key.path), e.check_name) for e in evaluations]
    with dg.DagsterInstance.get() as instance:
        stored = instance.event_log_storage.get_asset_check_partition_info(keys)
    assert {(info.check_key, info.partition_key) for info in stored} == {
        (key, HOUR) for key in keys
    }
    assert all(info.is_current for info in stored)
    statuses = {info.check_key.name: info.latest_execution_status.value for info in stored}
    assert (
        statuses["estimated_share"] == "FAILED" and statuses["envelopes_reconciled"] == "SUCCEEDED"
    )


CHECK_STATUSES = """
query ($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          partitionStatuses {
            ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
          }
        }
      }
    }
  }
}
"""


def check_statuses_over_graphql(instance: dg.DagsterInstance) -> dict[str, list[tuple]]:
    """What the UI's check tab reads: per check, its (start, end, status) partition ranges."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="chargeback_pipeline.definitions", attribute="defs"),
        location_name="chargeback",
    )
    keys = [{"path": [asset]} for asset in HOURLY_ASSETS]
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as process:
        answer = execute_dagster_graphql(
            process.create_request_context(), CHECK_STATUSES, {"keys": keys}
        )
    assert not answer.errors, answer.errors
    return {
        f"{node['assetKey']['path'][0]}.{check['name']}": [
            (r["startKey"], r["endKey"], r["status"]) for r in check["partitionStatuses"]["ranges"]
        ]
        for node in answer.data["assetNodes"]
        for check in node["assetChecksOrError"]["checks"]
    }


def test_graphql_shows_each_hourly_check_status_for_the_hour(hour_run):
    with dg.DagsterInstance.get() as instance:
        statuses = check_statuses_over_graphql(instance)
    assert len(statuses) == 7
    assert statuses.pop("usage_events.estimated_share") == [(HOUR, HOUR, "FAILED")]
    assert set(map(tuple, statuses.values())) == {((HOUR, HOUR, "SUCCEEDED"),)}


def test_every_hourly_check_spec_carries_the_hourly_partitions():
    specs = [*ingested_envelopes.check_specs, *usage_costs.check_specs]
    assert len(specs) == 7
    assert all(spec.partitions_def == hourly_partitions for spec in specs)
    assert all(spec.description for spec in specs)


def _observe_budgets(instance: dg.DagsterInstance) -> str:
    job = dg.define_asset_job("observe_budgets", selection=[budgets.key])
    location = dg.Definitions(
        assets=[budgets], jobs=[job], resources={"chargeback": ChargebackSettings()}
    )
    result = location.resolve_job_def("observe_budgets").execute_in_process(instance=instance)
    (observation,) = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    return observation.tags["dagster/data_version"]


def test_budgets_seed_is_an_observable_source_the_marts_read(chargeback_env, monkeypatch):
    graph = defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey("budgets"))
    assert node.is_observable and not node.is_materializable
    assert dg.AssetKey("budgets") in graph.get(dg.AssetKey("stg_budgets")).parent_keys
    assert dg.AssetKey("stg_budgets") in graph.get(dg.AssetKey("budget_status")).parent_keys

    with dg.DagsterInstance.ephemeral() as instance:
        assert _observe_budgets(instance) == content_version(SEEDS / "budgets.csv")
        seeds = chargeback_env / "seeds"
        shutil.copytree(SEEDS, seeds)
        (seeds / "budgets.csv").unlink()
        monkeypatch.setenv("CHARGEBACK_REFERENCE_DIR", str(seeds))
        assert _observe_budgets(instance) == MISSING_VERSION


def test_jobs_schedules_and_sensors_say_what_they_do():
    repository = defs().get_repository_def()
    described = [
        *(job for job in repository.get_all_jobs() if not job.name.startswith("__")),
        *repository.schedule_defs,
        *repository.sensor_defs,
    ]
    assert len(described) >= 9
    assert [d.name for d in described if not d.description] == []
