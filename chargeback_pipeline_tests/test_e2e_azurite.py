"""End to end on Azurite: HTTP into `chargeback serve-forwarder`, lake in Blob, marts checked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest

from chargeback_pipeline.cli import materialize_hours, materialize_marts
from chargeback_pipeline.devtools.azurite import free_port, wait_for_port
from chargeback_pipeline.lib.demo_traffic import generate_day_with_truth
from chargeback_pipeline.settings import load_settings

DAY = date(2026, 11, 20)


def post(port: int, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/envelopes",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture
def forwarder(blob_store_env, azurite_lake_endpoint: str, monkeypatch, chargeback_env: Path):
    """`chargeback serve-forwarder` as a real process writing into Azurite; stopped by PID."""
    monkeypatch.setenv("CHARGEBACK_LAKE", f"az://lake-{uuid.uuid4().hex[:12]}/chargeback")
    monkeypatch.setenv("CHARGEBACK_LAKE_CONNECTION_STRING", azurite_lake_endpoint)
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "chargeback"), "serve-forwarder", "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@pytest.mark.slow
def test_day_through_http_forwarder_into_blob_lake_and_marts(forwarder):
    envelopes, truth = generate_day_with_truth(DAY, seed=5, calls=300)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda e: post(forwarder, orjson.dumps(e)), envelopes))
    assert set(statuses) == {202}

    hours = [f"{DAY}-{h:02d}:00" for h in range(24)]
    assert materialize_hours(hours, show_progress=False) == []
    assert materialize_marts()

    settings = load_settings()
    options = settings.lake_storage_options()
    assert settings.lake.startswith("az://")
    events = pl.read_delta(f"{settings.lake}/usage_events", storage_options=options)
    assert events.height == truth.expected_valid_calls
    quarantined = pl.read_delta(f"{settings.lake}/quarantined_envelopes", storage_options=options)
    assert sorted(quarantined["request_id"].to_list()) == sorted(truth.invalid_request_ids)

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        requests, cost = con.execute(
            "select sum(requests), sum(total_cost) from chargeback_daily"
        ).fetchone()
        monthly = con.execute("select sum(total_cost) from chargeback_monthly").fetchone()[0]
    assert requests == truth.expected_valid_calls
    assert cost > 0 and monthly == cost
    assert json.dumps(str(cost))  # Decimal, exact
