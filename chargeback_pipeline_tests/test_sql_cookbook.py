"""`chargeback sql` and docs/cookbook.sql on the examples' hour: every query runs and agrees."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest

from chargeback_pipeline import sql_shell
from chargeback_pipeline.cli import main, materialize_hours, materialize_marts
from chargeback_pipeline.lib.envelopes import pseudonymise
from chargeback_pipeline.settings import PROJECT_ROOT, load_settings
from chargeback_pipeline_tests.defs.test_assets import forward_examples

HOUR = "2026-11-27-13:00"
COOKBOOK = PROJECT_ROOT / "docs" / "cookbook.sql"
EXPECTED = {
    "cost-by-team",
    "user-consumption",
    "unallocated-by-subscription",
    "unpriced-by-model",
    "price-change-impact",
}


@pytest.fixture
def marts(chargeback_env):
    forward_examples()
    assert materialize_hours([HOUR], show_progress=False) == []
    assert materialize_marts()
    return chargeback_env


def cookbook_results(params: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    """Each cookbook query through the code path of `chargeback sql --file`, as dict rows."""
    results = {}
    with sql_shell.connect(load_settings()) as con:
        for query in sql_shell.split_named(COOKBOOK.read_text()):
            assert not sql_shell.missing_parameters(query.sql, params), query.name
            relations = [r for r in sql_shell.run(con, query.sql, params) if r is not None]
            assert len(relations) == 1, query.name
            columns = relations[0].columns
            results[query.name] = [
                dict(zip(columns, row, strict=True)) for row in relations[0].fetchall()
            ]
    return results


def test_every_cookbook_query_runs_and_agrees_with_the_marts(marts):
    user_hash = pseudonymise("3f1c9a2e-user", b"test-pseudonym-key")
    results = cookbook_results({"user_hash": user_hash})
    assert set(results) == EXPECTED
    assert all(results[name] for name in EXPECTED), results

    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        month, total, requests = con.sql(
            "select max(month), sum(total_cost), sum(requests) from chargeback_monthly"
        ).fetchone()
    assert total > 0

    by_team = results["cost-by-team"]
    assert {row["month"] for row in by_team} == {month}
    assert sum(row["total_cost"] for row in by_team) == total

    user = results["user-consumption"]
    assert sum(row["requests"] for row in user) == requests == 6
    assert sum(row["total_cost"] for row in user) == total

    unallocated = results["unallocated-by-subscription"]
    assert sum(row["total_cost"] for row in unallocated) == total
    assert all(row["unallocated_cost"] == 0 for row in unallocated)

    unpriced = results["unpriced-by-model"]
    assert sum(row["requests"] for row in unpriced) == 6
    assert all(row["unpriced_requests"] == 0 for row in unpriced)

    impact = results["price-change-impact"]
    assert sum(row["billed_cost"] for row in impact) == total
    # the examples were billed at the prices still in force: repricing changes nothing
    assert all(row["difference"] == Decimal(0) for row in impact), impact
    assert all(row["requests_without_current_price"] == 0 for row in impact)


def test_user_query_is_bound_not_formatted(marts):
    hostile = "x' or '1'='1"
    results = cookbook_results({"user_hash": hostile})
    assert results["user-consumption"] == []


def test_sql_file_and_query_print(marts, capsys):
    assert main(["sql", "--query", "select count(*) from lake_usage_costs"]) == 0
    assert "│            6 │" in capsys.readouterr().out

    user_hash = pseudonymise("3f1c9a2e-user", b"test-pseudonym-key")
    argv = ["sql", "--file", str(COOKBOOK), "--param", f"user_hash={user_hash}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"-- {name}" in out for name in EXPECTED)

    assert main(["sql", "--file", str(COOKBOOK), "--name", "user-consumption"]) == 1
    assert "--param user_hash=..." in capsys.readouterr().err


def test_interactive_loop_runs_statements_until_quit(marts, monkeypatch, capsys):
    lines = iter(["select count(*) as n from lake_usage_events", "select nope", ".quit"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(lines))
    with sql_shell.connect(load_settings()) as con:
        assert sql_shell.interactive(con) == 0
    captured = capsys.readouterr()
    assert "│     6 │" in captured.out
    assert "error:" in captured.err
