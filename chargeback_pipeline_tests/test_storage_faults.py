"""The envelope store goes away: runs fail without a partial commit, the forwarder answers 503.

Each test runs its own Azurite with a folder for its data, so the blobs survive a stop and start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest
from deltalake import DeltaTable

from chargeback_pipeline.cli import materialize_hours
from chargeback_pipeline.devtools.azurite import (
    Azurite,
    free_port,
    start_azurite,
    stop_process,
    wait_for_port,
)
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.lib.demo_traffic import generate_hour
from chargeback_pipeline.lib.ingest import ingest_hour
from chargeback_pipeline.lib.reference import load_reference
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store, read_hour
from chargeback_pipeline_tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

HOUR = "2026-11-27-13:00"
HOUR_START = datetime(2026, 11, 27, 13, tzinfo=UTC)
CONTAINER = "envelopes-faults"
TABLES = ("quarantined_envelopes", "usage_events")


class RestartableAzurite:
    """One Azurite on a fixed port and data folder, stopped and started again by the test."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self.service: Azurite = start_azurite(location=location)
        self.port = self.service.port

    @property
    def connection_string(self) -> str:
        return self.service.connection_string

    def stop(self) -> None:
        stop_process(self.service.process)

    def start(self) -> None:
        self.service = start_azurite(port=self.port, location=self.location)


@pytest.fixture
def store_azurite(
    chargeback_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RestartableAzurite]:
    """CHARGEBACK_STORE in a dedicated, persistent Azurite; the lake stays a local folder."""
    location = chargeback_env / "azurite"
    location.mkdir()
    azurite = RestartableAzurite(location)
    monkeypatch.setenv("CHARGEBACK_STORE", azurite.connection_string)
    monkeypatch.setenv("CHARGEBACK_CONTAINER", CONTAINER)
    try:
        yield azurite
    finally:
        azurite.stop()


def calls(count: int, seed: int) -> list[bytes]:
    return [orjson.dumps(e) for e in generate_hour(HOUR_START, seed=seed, calls=count)]


def forward(raws: list[bytes]) -> None:
    settings = load_settings()
    store = open_store(settings.store, settings.container)
    for raw in raws:
        result = forward_envelope(raw, store, settings.max_envelope_bytes)
        assert result.status == 202, result.message


def lake_state() -> dict[str, tuple[int, pl.DataFrame]]:
    """Each table's version and the hour's rows."""
    lake = Path(load_settings().lake)
    state = {}
    for table in TABLES:
        uri = str(lake / table)
        rows = pl.read_delta(uri).filter(pl.col("hour") == HOUR)
        state[table] = (DeltaTable(uri).version(), rows.sort(pl.all()))
    return state


def test_run_with_the_store_down_fails_naming_it_commits_nothing_and_a_rerun_succeeds(
    store_azurite: RestartableAzurite, capsys: pytest.CaptureFixture[str]
):
    forward(calls(30, seed=1))
    assert materialize_hours([HOUR], show_progress=False) == []
    before = lake_state()
    assert before["usage_events"][1].height == 30
    forward(calls(10, seed=2))  # a successful rerun would now change the hour
    capsys.readouterr()

    store_azurite.stop()
    started = time.monotonic()
    failed = materialize_hours([HOUR], show_progress=False)
    took = time.monotonic() - started
    errors = capsys.readouterr().err
    with capsys.disabled():
        # Three attempts (Dagster RetryPolicy: 2 retries, 5 s exponential), each after SDK retries.
        print(f"\nrun with the store down failed after {took:.1f}s: {errors.strip()[:300]}")
    assert failed == [HOUR]
    assert f"blob container {CONTAINER} at http://127.0.0.1:{store_azurite.port}/" in errors
    assert "AccountKey" not in errors
    after = lake_state()
    for table in TABLES:
        assert after[table][0] == before[table][0], f"{table} got a commit"
        assert after[table][1].equals(before[table][1]), table

    store_azurite.start()
    assert materialize_hours([HOUR], show_progress=False) == []
    events = pl.read_delta(str(Path(load_settings().lake) / "usage_events"))
    assert events.height == 40
    assert events["request_id"].n_unique() == 40


def post(url: str, raw: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=raw, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


@pytest.fixture
def forwarder_url(store_azurite: RestartableAzurite) -> Iterator[str]:
    """`chargeback serve-forwarder` as its own process, writing into the dedicated Azurite."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "chargeback_pipeline.cli", "serve-forwarder", "--port", str(port)],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/api/envelopes"
    finally:
        stop_process(process)


def test_forwarder_answers_503_while_the_store_is_down_and_stores_only_whole_lines(
    store_azurite: RestartableAzurite, forwarder_url: str
):
    raws = calls(16, seed=3)
    first, during, after = raws[:8], raws[8:10], raws[10:]
    assert {post(forwarder_url, raw)[0] for raw in first} == {202}

    store_azurite.stop()
    for raw in during:
        started = time.monotonic()
        status, answer = post(forwarder_url, raw)
        waited = time.monotonic() - started
        assert status == 503, answer
        assert str(answer["message"]).startswith("storage unavailable, retry later")
        assert waited < 15, f"the 503 took {waited:.1f}s"
    print(f"503 answered after {waited:.1f}s of SDK retries")

    store_azurite.start()
    # The sender retries what got 503; everything is stored once and whole.
    assert {post(forwarder_url, raw)[0] for raw in during + after} == {202}
    settings = load_settings()
    store = open_store(settings.store, settings.container)
    stored = list(read_hour(store, HOUR))
    ids = [orjson.loads(item.raw)["request_id"] for item in stored]
    assert sorted(ids) == sorted(orjson.loads(raw)["request_id"] for raw in raws)
    assert sorted(item.raw for item in stored) == sorted(raws)
    for obj in store.list_hour(HOUR):
        assert store.read_object(obj.name).endswith(b"\n"), f"{obj.name} ends mid-line"

    deployments = load_reference(settings.reference_dir).deployments
    outcome = ingest_hour(read_hour(store, HOUR), HOUR, deployments, b"k")
    assert outcome.usage_events.height == len(raws)
    assert outcome.quarantined.is_empty()
