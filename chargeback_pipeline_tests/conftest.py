"""Shared fixtures: the contract's examples and an isolated lake/store per test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
EXAMPLES = SHARED / "examples"
SEEDS = REPO_ROOT / "dbt_like_sql" / "seeds"


@pytest.fixture
def example() -> Any:
    """Load one of ../shared/examples by stem."""

    def load(stem: str) -> dict[str, Any]:
        return json.loads((EXAMPLES / f"{stem}.json").read_text())

    return load


@pytest.fixture
def chargeback_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CHARGEBACK_* and DAGSTER_HOME pointing into tmp_path; returns tmp_path."""
    monkeypatch.setenv("CHARGEBACK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CHARGEBACK_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("CHARGEBACK_DUCKDB", str(tmp_path / "marts.duckdb"))
    monkeypatch.setenv("CHARGEBACK_PSEUDONYM_KEY", "test-pseudonym-key")
    monkeypatch.delenv("CHARGEBACK_REFERENCE_DIR", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return tmp_path


AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key: public by design, valid only against the emulator.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob endpoint started by this test session."""

    port: int
    pid: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {seconds}s")


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite (npm, installed by `make test`) on a free loopback port, stopped by PID after."""
    binary = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make test` (it runs `npm install`) first")
    port = _free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process)
        yield Azurite(port=port, pid=process.pid)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite_lake_endpoint(azurite: Azurite) -> Iterator[str]:
    """A connection string for a lake in Azurite, through the `startFrom` proxy delta-rs needs."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chargeback_pipeline_tests.azurite_proxy",
            str(azurite.port),
            str(port),
        ],
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process)
        yield azurite.connection_string.replace(f":{azurite.port}/", f":{port}/")
    finally:
        _stop(process)


@pytest.fixture
def blob_store_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch, chargeback_env: Path) -> str:
    """CHARGEBACK_STORE in Azurite with a fresh container per test; returns the container."""
    container = f"envelopes-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CHARGEBACK_STORE", azurite.connection_string)
    monkeypatch.setenv("CHARGEBACK_CONTAINER", container)
    return container
