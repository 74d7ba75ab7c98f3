"""Shared fixtures: the contract's examples and an isolated lake/store per test."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chargeback_pipeline.devtools.azurite import (
    Azurite,
    free_port,
    start_azurite,
    stop_process,
    wait_for_port,
)

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


def point_env_at(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CHARGEBACK_* and DAGSTER_HOME under root (also for module-scoped fixtures)."""
    monkeypatch.setenv("CHARGEBACK_STORE", str(root / "store"))
    monkeypatch.setenv("CHARGEBACK_LAKE", str(root / "lake"))
    monkeypatch.setenv("CHARGEBACK_DUCKDB", str(root / "marts.duckdb"))
    monkeypatch.setenv("CHARGEBACK_PSEUDONYM_KEY", "test-pseudonym-key")
    monkeypatch.delenv("CHARGEBACK_REFERENCE_DIR", raising=False)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))


@pytest.fixture
def chargeback_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CHARGEBACK_* and DAGSTER_HOME pointing into tmp_path; returns tmp_path."""
    point_env_at(tmp_path, monkeypatch)
    return tmp_path


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite (npm, installed by `make test`) on a free loopback port, stopped by PID after."""
    try:
        service = start_azurite()
    except RuntimeError as error:
        pytest.fail(f"{error} (`make test` installs and starts everything the tests need)")
    try:
        yield service
    finally:
        stop_process(service.process)


@pytest.fixture(scope="session")
def azurite_lake_endpoint(azurite: Azurite) -> Iterator[str]:
    """A connection string for a lake in Azurite, through the `startFrom` proxy delta-rs needs."""
    port = free_port()
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
        wait_for_port(port, process)
        yield azurite.connection_string.replace(f":{azurite.port}/", f":{port}/")
    finally:
        stop_process(process)


@pytest.fixture
def blob_store_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch, chargeback_env: Path) -> str:
    """CHARGEBACK_STORE in Azurite with a fresh container per test; returns the container."""
    container = f"envelopes-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CHARGEBACK_STORE", azurite.connection_string)
    monkeypatch.setenv("CHARGEBACK_CONTAINER", container)
    return container
