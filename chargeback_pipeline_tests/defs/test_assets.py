"""Hourly assets on a tmp_path lake: exact tokens, idempotent reruns, late arrivals, no content."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import polars as pl
import pytest

from chargeback_pipeline.cli import materialize_hours, materialize_marts
from chargeback_pipeline.defs.costs import usage_costs
from chargeback_pipeline.defs.ingest import ingested_envelopes
from chargeback_pipeline.defs.marts import dbt_like_marts
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.lib.demo_traffic import generate_day_with_truth
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store
from chargeback_pipeline_tests.conftest import EXAMPLES

HOUR = "2026-11-27-13:00"
TABLES = ("usage_events", "usage_costs", "quarantined_envelopes")


def forward(raw: bytes) -> None:
    settings = load_settings()
    result = forward_envelope(raw, open_store(settings.store), settings.max_envelope_bytes)
    assert result.status == 202, result.message


def forward_examples() -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        forward(orjson.dumps(json.loads(path.read_text())))


def run_hour(hour: str = HOUR) -> None:
    result = dg.materialize(
        [ingested_envelopes, usage_costs],
        partition_key=hour,
        resources={"chargeback": ChargebackSettings()},
    )
    assert result.success


def table(name: str) -> pl.DataFrame:
    return pl.read_delta(str(Path(load_settings().lake) / name))


def test_examples_hour_bills_exact_tokens_and_prices(chargeback_env):
    forward_examples()
    run_hour()
    events = table("usage_events").sort("request_id")
    assert events["request_id"].str.slice(-1).to_list() == ["1", "2", "3", "4", "5", "6"]
    assert events["prompt_tokens"].to_list() == [1850, 9, 412, 8, 14, 0]
    assert events["cached_tokens"].to_list() == [1536, 0, 0, 0, 0, 0]
    assert events["completion_tokens"].to_list() == [24, 3, 188, 0, 530, 0]
    assert events["reasoning_tokens"].to_list() == [0, 0, 0, 0, 448, 0]
    assert events["token_source"].to_list() == [
        "reported",
        "reported",
        "gateway",
        "reported",
        "reported",
        "none",
    ]
    costs = table("usage_costs").sort("request_id")
    assert str(costs["total_cost"][0]) == "0.002945000000"
    assert costs["priced"].all()
    assert table("quarantined_envelopes").is_empty()


def test_rerun_leaves_every_table_equal_in_content(chargeback_env):
    forward_examples()
    store_root = Path(load_settings().store)
    batch = next(store_root.rglob("*.ndjson"))
    with batch.open("ab") as handle:
        handle.write(b'{"schema_version": "2.0", "request_id": "v2"}\n')
    run_hour()
    before = {name: table(name).sort(pl.all()) for name in TABLES}
    run_hour()
    after = {name: table(name).sort(pl.all()) for name in TABLES}
    for name in TABLES:
        assert before[name].equals(after[name]), name
    assert before["quarantined_envelopes"]["reason"].str.starts_with("unknown_schema_major").all()


def test_redelivered_envelope_is_billed_once(chargeback_env):
    forward_examples()
    forward((EXAMPLES / "chat_completion.json").read_bytes().replace(b"\n", b""))
    run_hour()
    events = table("usage_events")
    assert events.height == 6
    assert events["request_id"].n_unique() == 6


def test_late_envelope_counts_after_its_hour_is_rerun(chargeback_env, example):
    forward_examples()
    run_hour()
    late = example("chat_completion")
    late["request_id"] = "late-arrival"
    forward(orjson.dumps(late))
    assert table("usage_events").height == 6
    run_hour()
    assert table("usage_events").height == 7
    assert table("usage_costs").height == 7


def test_conflicting_redelivery_is_quarantined_not_double_billed(chargeback_env, example):
    forward_examples()
    changed = example("chat_completion")
    changed["elapsed_ms"] = 1
    forward(orjson.dumps(changed))
    run_hour()
    assert table("usage_events").height == 6
    reasons = table("quarantined_envelopes")["reason"].to_list()
    assert len(reasons) == 1
    assert reasons[0].startswith("conflicting_duplicate")


def test_other_hours_are_untouched_by_a_rerun(chargeback_env, example):
    forward_examples()
    other = example("chat_completion")
    other["request_id"] = "next-hour"
    other["timestamp"] = "2026-11-27T14:00:00Z"
    forward(orjson.dumps(other))
    run_hour("2026-11-27-14:00")
    run_hour()
    run_hour()
    events = table("usage_events")
    assert events.group_by("hour").len().sort("hour")["len"].to_list() == [6, 1]


def test_missing_pseudonym_key_fails_the_run_with_instructions(chargeback_env, monkeypatch):
    monkeypatch.delenv("CHARGEBACK_PSEUDONYM_KEY")
    forward_examples()
    result = dg.materialize(
        [ingested_envelopes],
        partition_key=HOUR,
        resources={"chargeback": ChargebackSettings()},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "CHARGEBACK_PSEUDONYM_KEY" in failure.step_failure_data.error.message


def _string_values(frame: pl.DataFrame) -> list[str]:
    columns = [c for c, t in frame.schema.items() if t == pl.String]
    return [v for c in columns for v in frame[c].drop_nulls().to_list()]


@pytest.mark.slow
def test_demo_day_end_to_end_counts_and_keeps_no_content(chargeback_env):
    day = datetime(2026, 11, 20, tzinfo=UTC).date()
    envelopes, truth = generate_day_with_truth(day, seed=11, calls=400)
    for envelope in envelopes:
        forward(orjson.dumps(envelope))
    hours = [f"2026-11-20-{h:02d}:00" for h in range(24)]
    assert materialize_hours(hours, show_progress=False) == []
    assert materialize_marts()

    events = table("usage_events")
    assert events.height == truth.expected_valid_calls
    quarantined = table("quarantined_envelopes")
    got = {
        row["request_id"]: row["reason"].split(":")[0] for row in quarantined.iter_rows(named=True)
    }
    assert got == truth.invalid_request_ids

    settings = load_settings()
    values = [v for name in TABLES for v in _string_values(table(name))]
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        marts = [row[0] for row in con.execute("select table_name from duckdb_tables()").fetchall()]
        for mart in marts:
            values += _string_values(con.execute(f'select * from "{mart}"').pl())
    assert {"chargeback_daily", "chargeback_monthly", "focus_costs"} <= set(marts)
    haystack = "\n".join(values)
    leaked = [fragment for fragment in truth.text_fragments if fragment in haystack]
    assert leaked == []
    for envelope in envelopes[:200]:
        user_id = (envelope.get("caller") or {}).get("user_id")
        assert not user_id or user_id not in haystack


def test_marts_asset_builds_the_contract_marts(chargeback_env):
    forward_examples()
    run_hour()
    result = dg.materialize([dbt_like_marts], resources={"chargeback": ChargebackSettings()})
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        daily = con.execute(
            "select cost_center, requests, total_tokens, total_cost::varchar from chargeback_daily"
        ).fetchall()
    assert sum(row[1] for row in daily) == 6


def test_an_hour_whose_raw_envelopes_are_gone_keeps_its_billed_rows(chargeback_env):
    forward_examples()
    run_hour()
    for path in Path(load_settings().store).rglob("*.ndjson"):
        path.unlink()
    result = dg.materialize(
        [ingested_envelopes],
        partition_key=HOUR,
        resources={"chargeback": ChargebackSettings()},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "backfilling usage_costs" in failure.step_failure_data.error.message
    assert table("usage_events").height == 6
