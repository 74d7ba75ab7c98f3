"""The code location loads and shows the whole lineage; the Dagster CLI materialises an hour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest

from chargeback_pipeline.cli import main
from chargeback_pipeline.definitions import defs
from chargeback_pipeline_tests.conftest import EXAMPLES, SEEDS


def upstream(graph, key: str) -> set[str]:
    from dagster import AssetKey

    return {k.to_user_string() for k in graph.get(AssetKey(key)).parent_keys}


def test_lineage_runs_from_seeds_and_envelopes_to_marts():
    graph = defs().resolve_asset_graph()
    assert upstream(graph, "usage_events") == {"raw_envelopes", "deployments"}
    assert upstream(graph, "quarantined_envelopes") == {"raw_envelopes"}
    assert upstream(graph, "usage_costs") == {"usage_events", "price_book", "cost_centers"}
    assert upstream(graph, "stg_usage_costs") == {"usage_costs"}
    assert upstream(graph, "chargeback_daily") == {"stg_usage_costs"}
    assert upstream(graph, "chargeback_monthly") == {"chargeback_daily"}
    assert upstream(graph, "focus_costs") == {"stg_usage_costs"}


def test_schedule_runs_ten_past_each_hour_and_marts_follow_automatically():
    repository = defs().get_repository_def()
    schedules = {s.name: s for s in repository.schedule_defs}
    assert schedules["hourly_chargeback_schedule"].cron_schedule == "10 * * * *"
    assert "marts_after_hourly_runs" in {s.name for s in repository.sensor_defs}


@pytest.mark.slow
def test_dagster_cli_materialises_every_asset_for_one_hour(chargeback_env):
    assert main(["forward", str(_examples_ndjson(chargeback_env))]) == 0
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "chargeback_pipeline.definitions",
            "--select",
            "*",
            "--partition",
            "2026-11-27-13:00",
        ],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    costs = pl.read_delta(str(chargeback_env / "lake" / "usage_costs"))
    assert costs.height == 6
    assert (chargeback_env / "marts.duckdb").exists()


def test_unpriced_model_is_named_by_the_cli(chargeback_env, monkeypatch, capsys, tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for name in ("deployments.csv", "cost_centers.csv", "price_book.csv"):
        text = (SEEDS / name).read_text()
        if name == "price_book.csv":
            text = "\n".join(line for line in text.splitlines() if "gpt-4o-mini" not in line)
        (seeds / name).write_text(text + "\n")
    monkeypatch.setenv("CHARGEBACK_REFERENCE_DIR", str(seeds))
    assert main(["forward", str(_examples_ndjson(chargeback_env))]) == 0
    assert main(["materialize", "--start", "2026-11-27T13", "--end", "2026-11-27T14"]) == 0
    err = capsys.readouterr().err
    assert "unpriced_usage" in err
    assert "gpt-4o-mini-2024-07-18" in err


def _examples_ndjson(folder: Path) -> Path:
    path = folder / "examples.ndjson"
    lines = [orjson.dumps(json.loads(p.read_text())) for p in sorted(EXAMPLES.glob("*.json"))]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path
