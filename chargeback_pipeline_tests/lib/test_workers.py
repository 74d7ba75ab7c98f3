"""Parse workers: results in order, errors raised in the caller, a dead worker named."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from chargeback_pipeline.lib.ingest import ingest_hour, ingest_slices
from chargeback_pipeline.lib.reference import load_reference
from chargeback_pipeline.lib.workers import WorkerError, WorkerPool
from chargeback_pipeline.settings import PROJECT_ROOT
from chargeback_pipeline.store import LocalEnvelopeStore, read_hour, read_store_slice
from chargeback_pipeline.store.base import hour_slices


def square(n: int) -> int:
    return n * n


def refuse_seven(n: int) -> int:
    if n == 7:
        raise ValueError("seven is refused")
    return n


def exit_now(n: int) -> int:
    os._exit(3)


def exit_once_released(release: str) -> int:
    """Make this worker's exit wait until the file `release` exists (at most 20 s)."""

    def wait() -> None:
        deadline = time.monotonic() + 20
        while not Path(release).exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    atexit.register(wait)
    return os.getpid()


def test_leaving_the_pool_does_not_wait_for_workers_to_exit_and_they_are_reaped(tmp_path):
    release = tmp_path / "release"
    with WorkerPool(1) as pool:
        assert list(pool.map(exit_once_released, [str(release)])) == [pool._processes[0].pid]
        (worker,) = pool._processes
    assert worker.poll() is None  # still in its exit handler: the pool did not wait for it
    release.touch()
    deadline = time.monotonic() + 20
    while worker.returncode is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the reaping thread calls wait() and records the exit status
    assert worker.returncode == 0


def test_results_come_back_in_order_with_a_bounded_window():
    with WorkerPool(2) as pool:
        assert list(pool.map(square, range(50), window=1)) == [n * n for n in range(50)]


def test_an_error_in_a_task_is_raised_in_the_caller():
    with WorkerPool(2) as pool, pytest.raises(ValueError, match="seven is refused"):
        list(pool.map(refuse_seven, range(10)))


def test_a_dead_worker_is_named_not_waited_for():
    with WorkerPool(1) as pool, pytest.raises(WorkerError, match="exited with status 3"):
        list(pool.map(exit_now, [1]))


def test_an_hour_read_in_slices_by_two_workers_equals_reading_it_whole(tmp_path, example):
    from datetime import UTC, datetime

    import orjson

    store = LocalEnvelopeStore(tmp_path)
    hour = "2024-08-06-13:00"
    for n in range(60):
        envelope = example("chat_completion" if n % 3 else "embeddings")
        envelope["request_id"] = f"r{n:03d}"
        envelope["timestamp"] = "2024-08-06T13:05:00Z"
        store.write_envelope(orjson.dumps(envelope), datetime(2024, 8, 6, 13, 5, tzinfo=UTC), "x")
    store.write_envelope(b"not json", datetime(2024, 8, 6, 13, 5, tzinfo=UTC), "y")
    deployments = load_reference(PROJECT_ROOT / "dbt_like_sql" / "seeds").deployments
    whole = ingest_hour(read_hour(store, hour), hour, deployments, b"k")
    slices = hour_slices(store.list_hour(hour), 20_000)
    assert len(slices) > 4
    read = partial(read_store_slice, str(tmp_path), "envelopes")
    sliced = ingest_slices(read, slices, hour, deployments, b"k", workers=2)
    assert sliced.usage_events.equals(whole.usage_events)
    assert sliced.quarantined.equals(whole.quarantined)
    assert sliced.envelopes_read == 61


def test_a_parse_worker_task_imports_no_polars():
    """A worker unpickles `slice_columns` and the store's reader: importing Polars as well
    would cost each worker ~0.2 s of CPU before its first slice."""
    code = (
        "import sys, chargeback_pipeline.lib.workers, chargeback_pipeline.lib.parsed_rows, "
        "chargeback_pipeline.store; print(sorted({'polars', 'pandera', 'dagster'} & "
        "{name.split('.')[0] for name in sys.modules}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"
