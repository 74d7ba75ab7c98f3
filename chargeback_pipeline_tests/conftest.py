"""Shared fixtures: the contract's examples and an isolated lake/store per test."""

from __future__ import annotations

import json
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
