"""`chargeback forget-user`: the user's pseudonym leaves every table and mart, costs stay."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from chargeback_pipeline.cli import main, materialize_hours, materialize_marts
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.lib.envelopes import pseudonymise
from chargeback_pipeline.lib.erasure import (
    checked_pseudonym,
    clear_pseudonym,
    compact_and_vacuum,
)
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store
from chargeback_pipeline_tests.conftest import EXAMPLES

USER = "3f1c9a2e-user"
HOUR = "2026-11-27-13:00"
TABLES = ("usage_events", "usage_costs", "quarantined_envelopes")


def forward(envelope: dict[str, object]) -> None:
    settings = load_settings()
    result = forward_envelope(
        orjson.dumps(envelope), open_store(settings.store), settings.max_envelope_bytes
    )
    assert result.status == 202, result.message


@pytest.fixture
def billed(chargeback_env) -> str:
    """The examples hour (every call by USER) plus one call by someone else, billed and in marts."""
    for path in sorted(EXAMPLES.glob("*.json")):
        forward(json.loads(path.read_text()))
    other = json.loads((EXAMPLES / "chat_completion.json").read_text())
    other["request_id"] = "someone-else"
    other["caller"]["user_id"] = "another-user"
    forward(other)
    assert materialize_hours([HOUR], show_progress=False) == []
    assert materialize_marts()
    return pseudonymise(USER, b"test-pseudonym-key") or ""


def lake_table(name: str) -> pl.DataFrame:
    return pl.read_delta(str(Path(load_settings().lake) / name))


def mart_values() -> list[str]:
    """Every string value of every table in the marts file."""
    values: list[str] = []
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        names = con.execute("select table_name from duckdb_tables()").fetchall()
        for (name,) in names:
            frame = con.execute(f'select * from "{name}"').pl()
            for column, dtype in frame.schema.items():
                if dtype == pl.String:
                    values += frame[column].drop_nulls().to_list()
    return values


def total_cost() -> object:
    return lake_table("usage_costs")["total_cost"].sum()


def test_forget_user_leaves_no_trace_of_the_pseudonym_and_keeps_costs(billed, capsys):
    assert billed in lake_table("usage_events")["user_hash"].to_list()
    assert billed in mart_values()
    cost_before = total_cost()
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        marts_before = con.execute("select sum(total_cost) from chargeback_daily").fetchone()

    assert main(["forget-user", USER]) == 0

    printed = capsys.readouterr().out
    assert "usage_events: 6 rows" in printed
    assert "usage_costs: 6 rows" in printed
    assert "raw envelopes of 1 hour(s)" in printed
    assert USER not in printed and billed not in printed
    for name in TABLES:
        frame = lake_table(name)
        if "user_hash" in frame.columns:
            assert billed not in frame["user_hash"].to_list(), name
            assert frame["user_hash"].drop_nulls().len() == 1, name
    assert billed not in mart_values()
    assert total_cost() == cost_before
    assert lake_table("usage_costs").height == 7
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        marts_after = con.execute("select sum(total_cost) from chargeback_daily").fetchone()
    assert marts_after == marts_before


def test_forgetting_twice_changes_nothing_the_second_time(billed, capsys):
    assert main(["forget-user", USER]) == 0
    capsys.readouterr()
    assert main(["forget-user", USER]) == 0
    printed = capsys.readouterr().out
    assert "usage_events: 0 rows" in printed
    assert "no rows carry this user's pseudonym" in printed


def test_vacuum_removes_the_files_that_still_held_the_pseudonym(billed):
    lake = Path(load_settings().lake)
    assert main(["forget-user", USER]) == 0

    def files_holding_pseudonym() -> list[Path]:
        return [
            path
            for path in lake.rglob("*.parquet")
            if "_delta_log" not in path.parts
            and billed in pq.read_table(path, columns=["user_hash"]).column(0).to_pylist()
        ]

    # Until vacuum the superseded files are still on disk for time travel.
    assert files_holding_pseudonym()
    for name in ("usage_events", "usage_costs"):
        done = compact_and_vacuum(str(lake / name), 0, enforce_retention_duration=False)
        assert done is not None and done.files_vacuumed >= 1
    assert files_holding_pseudonym() == []


def test_an_empty_user_id_is_refused(chargeback_env, capsys):
    assert main(["forget-user", ""]) == 2
    assert "empty" in capsys.readouterr().err


def test_forget_user_needs_the_pseudonym_key(chargeback_env, monkeypatch, capsys):
    monkeypatch.delenv("CHARGEBACK_PSEUDONYM_KEY")
    assert main(["forget-user", USER]) == 2
    assert "CHARGEBACK_PSEUDONYM_KEY" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["", "ABC", "x' or '1'='1", "a" * 63, "A" * 64, "a" * 65])
def test_only_a_hex_hmac_reaches_a_predicate(tmp_path, bad):
    with pytest.raises(ValueError):
        checked_pseudonym(bad)
    table = tmp_path / "t"
    pl.DataFrame({"hour": ["h"], "user_hash": ["a" * 64]}).write_delta(str(table))
    with pytest.raises(ValueError):
        clear_pseudonym(str(table), bad)
    assert pl.read_delta(str(table))["user_hash"].to_list() == ["a" * 64]
