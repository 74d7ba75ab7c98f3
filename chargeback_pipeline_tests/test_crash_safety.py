"""`chargeback materialize` killed with SIGKILL at any point leaves a readable, consistent lake.

The same command is started again and again on one lake, each time killed at another point (while
importing, right after a Delta commit of each table, while the marts file is open), then once more
to completion. After every kill: each Delta table reads, the marts file opens read-only, and every
hour present in a table is complete. The final run equals a clean run in another lake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest
from deltalake import DeltaTable

from chargeback_pipeline.cli import forward_all
from chargeback_pipeline.lib.demo_traffic import generate_hour
from chargeback_pipeline.lib.ingest import ingest_hour
from chargeback_pipeline.lib.reference import load_reference
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store, read_hour
from chargeback_pipeline.store.base import hour_prefix

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 27, 10, tzinfo=UTC)
HOURS = [f"2026-11-27-{h}:00" for h in (10, 11, 12)]
COMMAND = ["materialize", "--start", "2026-11-27T10", "--end", "2026-11-27T13"]
TABLES = ("quarantined_envelopes", "usage_events", "usage_costs")
RUN_SECONDS = 40


def chargeback(env: dict[str, str]) -> subprocess.Popen[bytes]:
    # The console script's own module, so the test needs nothing on PATH.
    return subprocess.Popen(
        [sys.executable, "-m", "chargeback_pipeline.cli", *COMMAND],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@contextmanager
def running(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = chargeback(env)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def lake_env(base: dict[str, str], root: Path) -> dict[str, str]:
    """Same store, another lake, marts file and Dagster instance."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        **base,
        "CHARGEBACK_LAKE": str(root / "lake"),
        "CHARGEBACK_DUCKDB": str(root / "marts.duckdb"),
        "DAGSTER_HOME": str(home),
    }


def commits(lake: Path, table: str) -> int:
    log = lake / table / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def holds_open(pid: int, path: Path) -> bool:
    """Whether the process has `path` open (the marts build keeps it open, and only then)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path.resolve()):
                return True
        except OSError:
            continue
    return False


Trigger = Callable[[subprocess.Popen[bytes], float, dict[str, int]], bool]


def after(seconds: float) -> Trigger:
    return lambda _process, elapsed, _start: elapsed >= seconds


def on_commit(lake: Path, table: str, count: int = 1) -> Trigger:
    return lambda _process, _elapsed, start: commits(lake, table) >= start[table] + count


def while_open(path: Path) -> Trigger:
    return lambda process, _elapsed, _start: holds_open(process.pid, path)


def run_and_kill(env: dict[str, str], lake: Path, trigger: Trigger) -> str:
    """Start the command, SIGKILL its process group when the trigger fires; what happened."""
    start = {table: commits(lake, table) for table in TABLES}
    process = chargeback(env)
    began = time.monotonic()
    try:
        while process.poll() is None:
            elapsed = time.monotonic() - began
            if trigger(process, elapsed, start):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
                return f"killed at {elapsed:.2f}s"
            assert elapsed < RUN_SECONDS, "the run neither finished nor reached its kill point"
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return f"finished with {process.returncode} before its kill point"


def read_lake(lake: Path) -> dict[str, pl.DataFrame]:
    """Every table that has a commit, read whole (a folder with no commit is no table yet)."""
    return {
        table: pl.read_delta(str(lake / table))
        for table in TABLES
        if DeltaTable.is_deltatable(str(lake / table))
    }


def rows_per_hour(frame: pl.DataFrame | None) -> dict[str, int]:
    if frame is None:
        return {}
    return dict(frame.group_by("hour").len().iter_rows())


def marts(path: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(path), read_only=True) as con:
        names = [r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()]
        return {name: con.execute(f'select * from "{name}"').pl() for name in names}


def expected_rows() -> dict[str, dict[str, int]]:
    """Rows per hour and table of a complete run, from the pure ingest over the same store."""
    settings = load_settings()
    store = open_store(settings.store)
    deployments = load_reference(settings.reference_dir).deployments
    expected: dict[str, dict[str, int]] = {table: {} for table in TABLES}
    for hour in HOURS:
        outcome = ingest_hour(read_hour(store, hour), hour, deployments, b"k")
        expected["quarantined_envelopes"][hour] = outcome.quarantined.height
        expected["usage_events"][hour] = outcome.usage_events.height
        expected["usage_costs"][hour] = outcome.usage_events.height
    return expected


def assert_consistent(root: Path, expected: dict[str, dict[str, int]]) -> str:
    """Tables read, every hour present is whole, and a marts file holds a whole build or none."""
    tables = read_lake(root / "lake")
    per_hour = {table: rows_per_hour(tables.get(table)) for table in TABLES}
    for table, counts in per_hour.items():
        for hour, rows in counts.items():
            assert rows == expected[table][hour], f"{table} holds part of {hour}"
    for hour, rows in per_hour["usage_costs"].items():
        assert rows == per_hour["usage_events"].get(hour), f"usage_costs {hour} without its events"
    if (root / "marts.duckdb").exists():
        built = marts(root / "marts.duckdb")
        if "chargeback_daily" in built:
            # Marts are built only after every hour: a kept build covers all of them.
            daily = built["chargeback_daily"]["requests"].sum()
            assert daily == sum(expected["usage_costs"].values())
    hours = {table: len(counts) for table, counts in per_hour.items()}
    mart_state = f"{len(built)} marts tables" if (root / "marts.duckdb").exists() else "no marts"
    return f"hours per table {hours}, {mart_state}"


def fill_store() -> None:
    """A few hundred calls over three hours, a redelivery, and lines the pipeline quarantines."""
    envelopes = [
        e for n in range(3) for e in generate_hour(START + timedelta(hours=n), seed=5, calls=100)
    ]
    assert forward_all([*envelopes, *envelopes[:20]]) == {202: 320}
    store = Path(load_settings().store)
    batch = next((store / hour_prefix(HOURS[1])).glob("*.ndjson"))
    with batch.open("ab") as handle:
        handle.write(b'{"schema_version": "1.0", "request_id": "torn", "timest\n')
        handle.write(orjson.dumps({**envelopes[150], "schema_version": "7.0"}) + b"\n")


def totals(tables: dict[str, pl.DataFrame]) -> tuple[int, Decimal]:
    costs = tables["usage_costs"]
    cost = sum((v for v in costs["total_cost"].to_list() if v is not None), Decimal(0))
    return int(costs["total_tokens"].sum()), cost


def test_killed_materialisations_leave_a_consistent_lake_and_a_rerun_completes(
    chargeback_env: Path,
):
    fill_store()
    expected = expected_rows()
    assert set(expected["usage_events"]) == set(HOURS)
    assert sum(expected["quarantined_envelopes"].values()) == 2
    base = os.environ.copy()
    killed = lake_env(base, chargeback_env / "killed")
    clean = lake_env(base, chargeback_env / "clean")
    with running(clean) as reference:  # the clean run goes on alongside the first kills
        check_kills_then_rerun(chargeback_env, killed, expected, reference)


def check_kills_then_rerun(
    root: Path,
    killed: dict[str, str],
    expected: dict[str, dict[str, int]],
    reference: subprocess.Popen[bytes],
) -> None:
    """Kill the command at each point on one lake, rerun it whole, compare with the clean run."""
    lake = root / "killed" / "lake"
    marts_file = root / "killed" / "marts.duckdb"
    kill_points: list[tuple[str, Trigger]] = [
        ("after 0.5 s", after(0.5)),
        ("after 3 s", after(3.0)),
        ("first usage_events commit", on_commit(lake, "usage_events")),
        ("first usage_costs commit", on_commit(lake, "usage_costs")),
        ("second quarantine commit", on_commit(lake, "quarantined_envelopes", 2)),
        ("second usage_events commit", on_commit(lake, "usage_events", 2)),
        ("marts file open (first build)", while_open(marts_file)),
    ]

    outcomes = []
    for label, trigger in kill_points:
        outcome = run_and_kill(killed, lake, trigger)
        state = assert_consistent(root / "killed", expected)
        outcomes.append(f"{label}: {outcome}; {state}")
    print("\n".join(outcomes))
    assert sum("killed" in outcome for outcome in outcomes) == len(kill_points), outcomes

    rerun = chargeback(killed)
    _, errors = rerun.communicate(timeout=RUN_SECONDS)
    assert rerun.returncode == 0, errors.decode()
    assert_consistent(root / "killed", expected)
    _, reference_errors = reference.communicate(timeout=RUN_SECONDS)
    assert reference.returncode == 0, reference_errors.decode()
    expected_tables = read_lake(root / "clean" / "lake")
    assert_consistent(root / "clean", expected)

    got = read_lake(lake)
    assert totals(got) == totals(expected_tables)
    for table in ("usage_events", "usage_costs"):
        assert got[table].sort("request_id").equals(expected_tables[table].sort("request_id"))
    keys = ["hour", "source", "source_line"]
    assert (
        got["quarantined_envelopes"]
        .drop("detected_at")
        .sort(keys)
        .equals(expected_tables["quarantined_envelopes"].drop("detected_at").sort(keys))
    )
    built, reference_marts = marts(marts_file), marts(root / "clean" / "marts.duckdb")
    assert set(built) == set(reference_marts)
    assert_same_marts(built, reference_marts)

    # Killed while rebuilding complete marts: the previous build stays whole.
    outcome = run_and_kill(killed, lake, while_open(marts_file))
    state = assert_consistent(root / "killed", expected)
    print(f"marts file open (rebuild): {outcome}; {state}")
    assert "killed" in outcome
    assert_same_marts(marts(marts_file), reference_marts)


def assert_same_marts(built: dict[str, pl.DataFrame], reference: dict[str, pl.DataFrame]) -> None:
    assert set(built) == set(reference)
    for name in ("chargeback_daily", "chargeback_monthly", "focus_costs"):
        columns = built[name].columns
        assert built[name].sort(columns).equals(reference[name].sort(columns)), name
