"""usage_reconciliation on a tmp_path lake, against recorded Log Analytics answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import polars as pl
import pytest

from chargeback_pipeline.defs.costs import usage_costs
from chargeback_pipeline.defs.ingest import ingested_envelopes
from chargeback_pipeline.defs.reconciliation import (
    WORKSPACE_ENV,
    LogAnalyticsSettings,
    usage_reconciliation,
)
from chargeback_pipeline.lib.reconciliation import lost_tolerance, upgrade_tokens
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline_tests.defs.test_assets import HOUR, forward_examples, table
from chargeback_pipeline_tests.lib.test_log_analytics import (
    FORBIDDEN,
    PASSTHROUGH_ID,
    PASSTHROUGH_LLM_ROW,
    REPORTED_LLM_ROW,
    WORKSPACE,
    Recorded,
    RecordedTransport,
    both_tables,
    example_gateway_rows,
    example_id,
    gateway_table,
    llm_table,
    ok,
    partial,
    recorded_client,
)

LOST = ["9d2f0000-0000-0000-0000-00000000000a", "9d2f0000-0000-0000-0000-00000000000b"]
TABLES = ("usage_events", "usage_costs", "quarantined_envelopes")


def recorded_log_analytics(transport: RecordedTransport) -> LogAnalyticsSettings:
    """The resource with its client answered by recordings instead of Azure."""

    class RecordedLogAnalytics(LogAnalyticsSettings):
        @contextmanager
        def client(self) -> Iterator:
            with recorded_client(transport) as client:
                yield client

    return RecordedLogAnalytics(workspace_id=WORKSPACE)


def ingest_hour() -> None:
    result = dg.materialize(
        [ingested_envelopes, usage_costs],
        partition_key=HOUR,
        resources={"chargeback": ChargebackSettings()},
    )
    assert result.success


def reconcile(log_analytics: LogAnalyticsSettings, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [usage_reconciliation],
        partition_key=HOUR,
        resources={"chargeback": ChargebackSettings(), "log_analytics": log_analytics},
        **kwargs,
    )


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {check.check_name: check for check in result.get_asset_check_evaluations()}


def snapshot() -> dict[str, pl.DataFrame]:
    return {name: table(name).sort(pl.all()) for name in TABLES}


def row(name: str, request_id: str) -> dict:
    return table(name).filter(pl.col("request_id") == request_id).row(0, named=True)


@pytest.fixture
def hour_ingested(chargeback_env, monkeypatch):
    monkeypatch.delenv(WORKSPACE_ENV, raising=False)
    monkeypatch.delenv("CHARGEBACK_LOST_TOLERANCE", raising=False)
    forward_examples()
    ingest_hour()
    return chargeback_env


def test_lost_envelopes_are_counted_per_subscription_with_sample_ids(hour_ingested):
    extra = [[LOST[0], "sub-data-science", "azure-openai", 200]]
    extra += [[LOST[1], "sub-data-science", "azure-openai", 500]]
    transport = both_tables(ok(gateway_table(example_gateway_rows(extra))), ok(llm_table([])))
    result = reconcile(recorded_log_analytics(transport))
    assert result.success
    lost = checks(result)["lost_envelopes"]
    assert not lost.passed
    assert lost.severity == dg.AssetCheckSeverity.ERROR
    assert lost.metadata["gateway_calls"].value == 8
    assert lost.metadata["lost"].value == 2
    assert lost.metadata["per_subscription"].value == {
        "sub-data-science": {"calls": 2, "lost": 2, "sample_ids": LOST}
    }
    assert lost.metadata["by_response_code"].value == {"200": 1, "500": 1}


def test_tolerance_lets_a_small_share_of_lost_calls_pass(hour_ingested, monkeypatch):
    monkeypatch.setenv("CHARGEBACK_LOST_TOLERANCE", "0.2")
    extra = [[LOST[0], "sub-data-science", "azure-openai", 200]]
    transport = both_tables(ok(gateway_table(example_gateway_rows(extra))), ok(llm_table([])))
    lost = checks(reconcile(recorded_log_analytics(transport)))["lost_envelopes"]
    assert lost.passed and lost.metadata["lost"].value == 1


def test_no_lost_envelope_passes_and_quarantined_ids_count_as_seen(hour_ingested):
    rows = [[r[0].upper(), *r[1:]] for r in example_gateway_rows()]  # GUID case may differ
    transport = both_tables(ok(gateway_table(rows)), ok(llm_table([])))
    lost = checks(reconcile(recorded_log_analytics(transport)))["lost_envelopes"]
    assert lost.passed
    assert lost.metadata["lost"].value == 0 and lost.metadata["gateway_calls"].value == 6


def test_passthrough_stream_is_upgraded_from_the_llm_log_and_repriced(hour_ingested):
    before = row("usage_events", PASSTHROUGH_ID)
    assert (before["prompt_tokens"], before["completion_tokens"]) == (412, 188)
    assert before["token_source"] == "gateway"
    assert str(row("usage_costs", PASSTHROUGH_ID)["total_cost"]) == "0.002910000000"
    llm = ok(llm_table([PASSTHROUGH_LLM_ROW, REPORTED_LLM_ROW]))
    transport = both_tables(ok(gateway_table(example_gateway_rows())), llm)

    result = reconcile(recorded_log_analytics(transport))

    assert result.success
    events, costs = row("usage_events", PASSTHROUGH_ID), row("usage_costs", PASSTHROUGH_ID)
    assert (events["prompt_tokens"], events["completion_tokens"], events["total_tokens"]) == (
        415,
        190,
        605,
    )
    assert events["token_source"] == costs["token_source"] == "log_analytics"
    # 415 x 2.50 + 190 x 10.00 per million (gpt-4o-2024-08-06, GlobalStandard)
    assert str(costs["total_cost"]) == "0.002937500000"
    reported = row("usage_events", example_id(1))
    assert (reported["prompt_tokens"], reported["token_source"]) == (1850, "reported")
    upgraded = checks(result)["tokens_upgraded"]
    assert upgraded.passed
    assert upgraded.metadata["rows_upgraded"].value == 1
    assert upgraded.metadata["token_delta"].value == 5
    assert table("usage_events").height == 6 and table("usage_costs").height == 6


def test_rerun_is_idempotent_and_a_full_hourly_rerun_reupgrades(hour_ingested):
    def transport() -> RecordedTransport:
        return both_tables(
            ok(gateway_table(example_gateway_rows())), ok(llm_table([PASSTHROUGH_LLM_ROW]))
        )

    assert reconcile(recorded_log_analytics(transport())).success
    once = snapshot()
    second = reconcile(recorded_log_analytics(transport()))
    assert checks(second)["tokens_upgraded"].metadata["rows_changed"].value == 0
    for name, frame in snapshot().items():
        assert frame.equals(once[name]), name

    ingest_hour()  # a late-arrival rerun resets the row to the gateway's counts...
    assert row("usage_events", PASSTHROUGH_ID)["token_source"] == "gateway"
    assert reconcile(recorded_log_analytics(transport())).success  # ...and the job re-upgrades
    for name, frame in snapshot().items():
        assert frame.drop("detected_at", strict=False).equals(
            once[name].drop("detected_at", strict=False)
        ), name


def test_partial_llm_log_upgrades_what_it_returned_and_says_so(hour_ingested):
    llm = partial(llm_table([PASSTHROUGH_LLM_ROW]))
    transport = both_tables(ok(gateway_table(example_gateway_rows())), llm)
    result = reconcile(recorded_log_analytics(transport))
    assert result.success
    materialization = result.asset_materializations_for_node("usage_reconciliation")[0]
    assert materialization.metadata["status"].value == "partial"
    problems = checks(result)["tokens_upgraded"].metadata["partial_errors"].value
    assert any("record count limit" in problem for problem in problems)
    assert row("usage_events", PASSTHROUGH_ID)["token_source"] == "log_analytics"


def test_no_workspace_skips_both_checks_with_the_reason(hour_ingested):
    before = snapshot()
    result = reconcile(LogAnalyticsSettings())
    assert result.success
    found = checks(result)
    assert set(found) == {"lost_envelopes", "tokens_upgraded"}
    for check in found.values():
        assert check.passed
        assert check.metadata["status"].value == "skipped"
        assert check.metadata["reason"].value == f"{WORKSPACE_ENV} is not set"
    for name, frame in snapshot().items():
        assert frame.equals(before[name]), name


def test_workspace_id_is_read_from_the_environment_at_run_time(monkeypatch):
    monkeypatch.delenv(WORKSPACE_ENV, raising=False)
    settings = LogAnalyticsSettings()
    assert settings.workspace() is None
    monkeypatch.setenv(WORKSPACE_ENV, WORKSPACE)
    assert settings.workspace() == WORKSPACE
    assert LogAnalyticsSettings(workspace_id="explicit").workspace() == "explicit"


def test_throttling_is_retried_then_fails_leaving_the_tables_alone(hour_ingested):
    before = snapshot()
    throttled = Recorded(429, {"error": {"code": "ThrottledError"}}, {"Retry-After": "0"})
    transport = both_tables(throttled, ok(llm_table([])))
    result = reconcile(recorded_log_analytics(transport), raise_on_error=False)
    assert not result.success
    retries = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert len(retries) == 3
    for name, frame in snapshot().items():
        assert frame.equals(before[name]), name


def test_missing_role_fails_at_once_with_instructions(hour_ingested):
    transport = both_tables(FORBIDDEN, ok(llm_table([])))
    result = reconcile(recorded_log_analytics(transport), raise_on_error=False)
    assert not result.success
    assert not [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "Log Analytics Reader" in failure.step_failure_data.error.message


# --- the pure rules, without Dagster ---


def test_lost_tolerance_is_a_share_between_zero_and_one():
    assert lost_tolerance({}) == 0.0
    assert lost_tolerance({"CHARGEBACK_LOST_TOLERANCE": "0.001"}) == 0.001
    for bad in ("-0.1", "1.5", "nan", "two percent"):
        with pytest.raises(ValueError, match="CHARGEBACK_LOST_TOLERANCE"):
            lost_tolerance({"CHARGEBACK_LOST_TOLERANCE": bad})


def test_upgrade_leaves_reported_rows_and_never_downgrades():
    events = pl.DataFrame(
        {
            "request_id": ["r1", "r2", "r3", "r4"],
            "prompt_tokens": [10, 10, 10, 10],
            "completion_tokens": [5, 5, 5, 5],
            "total_tokens": [15, 15, 15, 15],
            "token_source": ["reported", "gateway", "log_analytics", "estimated"],
        }
    )
    llm = pl.DataFrame(
        {
            "correlation_id": ["R1", "r2", "r4"],
            "prompt_tokens": [1, 2, -4],
            "completion_tokens": [1, 3, 4],
            "total_tokens": [2, None, 8],
        },
        schema_overrides={"total_tokens": pl.Int64},
    )
    upgrade = upgrade_tokens(events, llm)
    assert upgrade.events["token_source"].to_list() == [
        "reported",
        "log_analytics",
        "log_analytics",  # absent from the log now: kept, not downgraded
        "estimated",  # a negative count is not usable
    ]
    assert upgrade.events["total_tokens"].to_list() == [15, 5, 15, 15]
    assert (upgrade.upgraded, upgrade.changed, upgrade.not_upgraded) == (1, 1, 1)
    assert upgrade_tokens(upgrade.events, llm).events.equals(upgrade.events)
