"""A marts build waits while a reader holds the file, instead of failing at once."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from chargeback_pipeline.lib.marts import connect_for_writing

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_for_reading(path: str, seconds: float) -> subprocess.Popen[str]:
    """Another process (the read API, `chargeback sql`) with the file open read-only."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_build_waits_for_a_reader_to_let_go(tmp_path):
    path = str(tmp_path / "marts.duckdb")
    duckdb.connect(path).close()
    holder = hold_for_reading(path, 1.0)
    try:
        with connect_for_writing(tmp_path / "marts.duckdb", wait_seconds=20) as con:
            con.execute("create table built as select 1 as x")
    finally:
        holder.wait(timeout=20)
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("select x from built").fetchone() == (1,)


def test_a_reader_that_never_lets_go_fails_the_build_naming_the_lock(tmp_path):
    path = str(tmp_path / "marts.duckdb")
    duckdb.connect(path).close()
    holder = hold_for_reading(path, 10.0)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            connect_for_writing(tmp_path / "marts.duckdb", wait_seconds=0.3)
    finally:
        holder.kill()
        holder.wait()
