"""Incremental marts: a refresh replaces only the days whose lake partitions changed, and leaves
the file equal, table by table and row by row, to a full rebuild of the same lake."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from chargeback_pipeline.lib import marts
from chargeback_pipeline.lib.marts import MartsBuild, build_marts, mart_variables
from chargeback_pipeline.lib.marts_state import STATE_TABLE
from chargeback_pipeline.lib.tables import QUARANTINED_ENVELOPES, conform
from chargeback_pipeline_tests.lib.test_finops_marts import (
    PROJECT,
    costs_frame,
    ptu_call,
    usage,
    write_seeds,
)

DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")


def day_of_calls(day: str, tag: str = "") -> list[dict[str, Any]]:
    """A varied day: cost centers, apps, users, an unpriced call, errors and PTU traffic."""
    rows = []
    for hour in (0, 9, 13, 23):
        at = f"{day}T{hour:02d}:1"
        rows += [
            usage(f"{at}0:00", f"{day}-{hour}-a{tag}", "CC-A", "1.25", app_id="app-1"),
            usage(f"{at}1:00", f"{day}-{hour}-b{tag}", "CC-B", "0.10", user_hash="u-1"),
            usage(f"{at}2:00", f"{day}-{hour}-u{tag}", "CC-B", None, status_code=500),
            ptu_call(f"{at}3:00", f"{day}-{hour}-p{tag}", "CC-A", prompt_tokens=hour + 1),
            usage(f"{at}4:00", f"{day}-{hour}-t{tag}", "CC-C", "2.50", status_code=429),
        ]
    return rows


def quarantined(day: str, hour: int, count: int) -> pl.DataFrame:
    rows = [
        {
            "source": f"raw/{day}/{hour:02d}/batch.ndjson",
            "source_line": line,
            "request_id": f"q-{day}-{hour}-{line}",
            "hour": f"{day}-{hour:02d}:00",
            "reason": "not_json: line is not JSON",
            "detected_at": datetime(2026, 3, 5, tzinfo=UTC),
        }
        for line in range(count)
    ]
    return conform(pl.DataFrame(rows, schema=QUARANTINED_ENVELOPES), QUARANTINED_ENVELOPES)


def replace_hour(table: Path, frame: pl.DataFrame, hour: str) -> None:
    """What the hourly assets do: one commit replacing exactly one hour's rows."""
    write_deltalake(
        str(table),
        frame.to_arrow(),
        mode="overwrite",
        predicate=f"hour = '{hour}'",
        partition_by=["hour"],
    )


def hour_rows(rows: list[dict[str, Any]], hour: str) -> pl.DataFrame:
    return costs_frame([row for row in rows if row["hour"] == hour])


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """Three days of usage and two hours of quarantine, partitioned by hour like the real lake."""
    root = tmp_path / "lake"
    rows = [row for day in DAYS for row in day_of_calls(day)]
    write_deltalake(str(root / "usage_costs"), costs_frame(rows).to_arrow(), partition_by=["hour"])
    lost = pl.concat([quarantined(DAYS[0], 9, 2), quarantined(DAYS[1], 13, 1)])
    write_deltalake(str(root / "quarantined_envelopes"), lost.to_arrow(), partition_by=["hour"])
    return root


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    return write_seeds(tmp_path / "seeds")


def build(
    lake: Path, path: Path, seeds: Path, project: Path = PROJECT, **options: Any
) -> MartsBuild:
    return build_marts(
        project,
        str(lake),
        path,
        reference_dir=seeds,
        variables=options.pop("variables", mart_variables({})),
        **options,
    )


def snapshot(path: Path) -> dict[str, tuple[tuple[tuple[str, str], ...], list[tuple]]]:
    """Every model table: its column types and its rows, sorted (tables have no order)."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [
            row[0]
            for row in con.execute(
                "select table_name from duckdb_tables() where table_name <> ?", [STATE_TABLE]
            ).fetchall()
        ]
        tables = {}
        for name in names:
            types = con.execute(
                "select column_name, data_type from information_schema.columns"
                " where table_name = ? order by ordinal_position",
                [name],
            ).fetchall()
            rows = con.execute(f'select * from "{name}"').fetchall()
            tables[name] = (tuple(types), sorted(rows, key=repr))
    return tables


def assert_equals_full_rebuild(lake: Path, path: Path, seeds: Path, tmp_path: Path) -> None:
    full = tmp_path / "full.duckdb"
    full.unlink(missing_ok=True)
    assert build(lake, full, seeds).mode == "full"
    expected, got = snapshot(full), snapshot(path)
    assert set(got) == set(expected)
    for name in expected:
        assert got[name] == expected[name], name


def actions(built: MartsBuild) -> dict[str, str]:
    return {run.name: run.action for run in built.runs}


def plant_marker(path: Path) -> None:
    """A row no build would write: it survives only if chargeback_monthly is not rebuilt."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "insert into chargeback_monthly (month, cost_center, requests)"
            " values ('1999-01', 'MARKER', 0)"
        )


def has_marker(path: Path) -> bool:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(
            "select count(*) from chargeback_monthly where cost_center = 'MARKER'"
        ).fetchone()
    return bool(row and row[0])


def test_first_build_is_full_and_records_the_lake_versions(
    lake: Path, seeds: Path, tmp_path: Path
) -> None:
    path = tmp_path / "marts.duckdb"
    built = build(lake, path, seeds)
    assert (built.mode, built.reason) == ("full", "no earlier build recorded in the marts file")
    with duckdb.connect(str(path), read_only=True) as con:
        state = con.execute(f"select source, version from {STATE_TABLE} order by source").fetchall()
    assert state == [("lake.quarantined_envelopes", 0), ("lake.usage_costs", 0)]


def test_replacing_an_hour_refreshes_its_day_exactly(
    lake: Path, seeds: Path, tmp_path: Path
) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    before = snapshot(path)
    hour = f"{DAYS[1]}-13:00"
    changed = [
        {**row, "cost_center": "CC-D", "total_cost": row["total_cost"] and row["total_cost"] * 3}
        for row in day_of_calls(DAYS[1], tag="-v2")
        if row["hour"] == hour
    ]
    replace_hour(lake / "usage_costs", costs_frame(changed), hour)

    built = build(lake, path, seeds)

    assert (built.mode, built.days) == ("incremental", (date(2026, 3, 2),))
    assert actions(built)["chargeback_daily"] == "replaced_days"
    assert actions(built)["chargeback_monthly"] == "rebuilt"
    # the quarantine did not change: its models are not touched
    assert actions(built)["quarantine_daily"] == "kept"
    assert snapshot(path)["chargeback_daily"] != before["chargeback_daily"]
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)


def test_a_new_day_and_new_quarantine_are_added(lake: Path, seeds: Path, tmp_path: Path) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    new_day = "2026-03-04"
    rows = day_of_calls(new_day)
    for hour in sorted({row["hour"] for row in rows}):
        replace_hour(lake / "usage_costs", hour_rows(rows, hour), hour)
    replace_hour(lake / "quarantined_envelopes", quarantined(new_day, 9, 3), f"{new_day}-09:00")

    built = build(lake, path, seeds)

    assert (built.mode, built.days) == ("incremental", (date(2026, 3, 4),))
    assert actions(built)["quarantine_daily"] == "replaced_days"
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)


def test_an_emptied_hour_disappears_from_the_marts(lake: Path, seeds: Path, tmp_path: Path) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    hour = f"{DAYS[0]}-09:00"
    replace_hour(lake / "usage_costs", costs_frame([]), hour)
    replace_hour(lake / "quarantined_envelopes", quarantined(DAYS[0], 9, 0), hour)

    built = build(lake, path, seeds)

    assert (built.mode, built.days) == ("incremental", (date(2026, 3, 1),))
    with duckdb.connect(str(path), read_only=True) as con:
        left = con.execute(
            "select (select count(*) from stg_usage_costs where hour = ?),"
            " (select count(*) from quarantine_daily where day = ?)",
            [hour, date(2026, 3, 1)],
        ).fetchone()
    assert left == (0, 0)
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)


def test_nothing_changed_rebuilds_nothing(lake: Path, seeds: Path, tmp_path: Path) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    plant_marker(path)

    built = build(lake, path, seeds)

    assert built.mode == "unchanged"
    assert set(actions(built).values()) == {"kept"}
    assert has_marker(path)
    assert {run.name: run.rows for run in built.runs}["stg_usage_costs"] == 5 * 4 * len(DAYS)


def change_seed(project: Path, seeds: Path) -> dict[str, Any]:
    (seeds / "budgets.csv").write_text("cost_center,month,amount,currency\nCC-A,2026-03,5.00,USD\n")
    return {}


def change_model(project: Path, seeds: Path) -> dict[str, Any]:
    model = project / "marts" / "quarantine_daily.sql"
    model.write_text(model.read_text() + "\n-- a comment is a change too\n")
    return {}


def change_docs(project: Path, seeds: Path) -> dict[str, Any]:
    docs = project / "models.yml"
    docs.write_text(docs.read_text().replace("UTC day of the hour partition", "UTC day"))
    return {}


def change_var(project: Path, seeds: Path) -> dict[str, Any]:
    return {"variables": mart_variables({"CHARGEBACK_ANOMALY_THRESHOLD": "0.5"})}


@pytest.mark.parametrize("change", [change_seed, change_model, change_docs, change_var])
def test_a_changed_seed_model_docs_or_var_forces_a_full_rebuild(
    lake: Path, seeds: Path, tmp_path: Path, change: Any
) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("seeds"))
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds, project)
    plant_marker(path)

    built = build(lake, path, seeds, project, **change(project, seeds))

    assert (built.mode, built.reason) == (
        "full",
        "models, models.yml, seeds or vars changed since the last build",
    )
    assert not has_marker(path)


def test_a_recreated_lake_table_forces_a_full_rebuild(
    lake: Path, seeds: Path, tmp_path: Path
) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    plant_marker(path)
    table = lake / "usage_costs"
    rows = pl.read_delta(str(table))
    shutil.rmtree(table)
    # same version number (0), other content: only the table id tells them apart
    write_deltalake(str(table), rows.head(3).to_arrow(), partition_by=["hour"])

    built = build(lake, path, seeds)

    assert built.mode == "full" and "was recreated" in built.reason
    assert not has_marker(path)
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)


def test_a_version_no_longer_in_the_log_forces_a_full_rebuild(
    lake: Path, seeds: Path, tmp_path: Path
) -> None:
    table = lake / "quarantined_envelopes"
    DeltaTable(str(table)).alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 0 seconds"}
    )
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    hour = f"{DAYS[2]}-23:00"
    replace_hour(table, quarantined(DAYS[2], 23, 1), hour)
    maintained = DeltaTable(str(table))
    maintained.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    maintained.create_checkpoint()
    maintained.cleanup_metadata()

    built = build(lake, path, seeds)

    assert built.mode == "full" and "can no longer be loaded" in built.reason
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)


def test_full_refresh_on_request(lake: Path, seeds: Path, tmp_path: Path) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    plant_marker(path)

    built = build(lake, path, seeds, full_refresh=True)

    assert (built.mode, built.reason) == ("full", "full refresh requested")
    assert not has_marker(path)


def test_a_failed_refresh_keeps_the_file_and_the_rerun_counts_once(
    lake: Path, seeds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    before = snapshot(path)
    hour = f"{DAYS[2]}-09:00"
    extra = usage(f"{DAYS[2]}T09:59:00", "late-call", "CC-A", "4.00")
    replace_hour(lake / "usage_costs", hour_rows([*day_of_calls(DAYS[2]), extra], hour), hour)

    def fail(*args: object) -> None:
        raise RuntimeError("disk full")

    # the state is written last in the transaction: every model has been changed by then
    monkeypatch.setattr(marts, "write_state", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        build(lake, path, seeds)
    assert snapshot(path) == before
    monkeypatch.undo()

    built = build(lake, path, seeds)

    assert (built.mode, built.days) == ("incremental", (date(2026, 3, 3),))
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute(
            "select count(*) from stg_usage_costs where request_id = 'late-call'"
        ).fetchone() == (1,)


def test_a_row_outside_its_hour_partition_makes_the_refresh_a_full_rebuild(
    lake: Path, seeds: Path, tmp_path: Path
) -> None:
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    # validation never lets this through; if it did, replacing day 2 would miss the row
    stray = {**usage(f"{DAYS[0]}T05:00:00", "stray", "CC-A", "1.00"), "hour": f"{DAYS[1]}-05:00"}
    replace_hour(lake / "usage_costs", costs_frame([stray]), f"{DAYS[1]}-05:00")

    built = build(lake, path, seeds)

    assert built.mode == "full" and "fall outside the days refreshed" in built.reason
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)


def test_a_lake_table_created_after_the_build_adds_its_days(
    lake: Path, seeds: Path, tmp_path: Path
) -> None:
    table = lake / "quarantined_envelopes"
    shutil.rmtree(table)
    path = tmp_path / "marts.duckdb"
    build(lake, path, seeds)
    write_deltalake(str(table), quarantined(DAYS[2], 0, 2).to_arrow(), partition_by=["hour"])

    built = build(lake, path, seeds)

    assert (built.mode, built.days) == ("incremental", (date(2026, 3, 3),))
    assert_equals_full_rebuild(lake, path, seeds, tmp_path)


def test_a_lake_table_without_hour_partitions_is_rebuilt_in_full_not_failed(
    tmp_path: Path, seeds: Path
) -> None:
    """Tables written by hand (or by an older version) without `hour` partitions cannot be read
    by day: every build of them is a full one, and none fails."""
    root = tmp_path / "flat-lake"
    rows = [row for day in DAYS for row in day_of_calls(day)]
    write_deltalake(str(root / "usage_costs"), costs_frame(rows).to_arrow())
    path = tmp_path / "marts.duckdb"
    assert build(root, path, seeds).mode == "full"
    again = build(root, path, seeds)
    assert again.mode == "full" and "not partitioned by hour" in again.reason
    assert_equals_full_rebuild(root, path, seeds, tmp_path)
