"""Lake views in a DuckDB file, read back by a new read-only connection (local lake and Azurite)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from azure.storage.blob import ContainerClient
from deltalake import write_deltalake

from chargeback_pipeline.devtools.azurite import ACCOUNT as AZURITE_ACCOUNT
from chargeback_pipeline.devtools.azurite import ACCOUNT_KEY as AZURITE_KEY
from chargeback_pipeline.devtools.azurite import Azurite
from chargeback_pipeline.lib import lake_views, tables
from chargeback_pipeline.lib.lake_views import (
    EMULATOR_KEY,
    EMULATOR_URL_VARIABLE,
    ExtensionUnavailable,
    attach_lake_views,
    azure_secret_sql,
    open_lake,
)
from chargeback_pipeline.lib.marts import build_marts
from chargeback_pipeline_tests.conftest import REPO_ROOT

HOUR = "2026-01-15T10"
COSTS = [Decimal("1.250000000001"), Decimal("0.000000000002")]


def two_costs() -> pl.DataFrame:
    rows = pl.DataFrame(
        {"request_id": ["r1", "r2"], "hour": [HOUR, HOUR], "total_cost": COSTS},
        schema_overrides={"total_cost": tables.MONEY},
    )
    return tables.conform(
        pl.concat([tables.empty_frame(tables.USAGE_COSTS), rows], how="diagonal_relaxed"),
        tables.USAGE_COSTS,
    )


def write_costs(lake: str, storage_options: dict[str, str] | None = None) -> str:
    uri = f"{lake}/usage_costs"
    write_deltalake(
        uri, two_costs().to_arrow(), partition_by=["hour"], storage_options=storage_options
    )
    return uri


def read_back(
    database: Path, lake: str, uri: str, storage_options: dict[str, str] | None = None
) -> None:
    """What an analyst does: a new read-only connection, the extension, then plain SQL."""
    with duckdb.connect(str(database), read_only=True) as con:
        open_lake(con, lake, storage_options)
        through_view = con.execute(
            "select count(*), sum(total_cost), typeof(sum(total_cost)) from lake_usage_costs"
        ).fetchone()
        raw = con.execute(
            "select count(*), typeof(any_value(total_cost)) from delta_scan(?)", [uri]
        ).fetchone()
    assert through_view == (2, sum(COSTS), "DECIMAL(38,12)")
    assert raw == (2, "DECIMAL(38,12)")


def test_views_over_a_local_lake_survive_reopening(tmp_path: Path) -> None:
    lake = str(tmp_path / "it's a lake")  # the quote must not break the DDL
    uri = write_costs(lake)
    database = tmp_path / "views.duckdb"
    with duckdb.connect(str(database)) as con:
        assert attach_lake_views(con, lake, None) == ["lake_usage_costs"]
    read_back(database, lake, uri)


def test_views_over_a_lake_in_azurite(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wrong on purpose: attach_lake_views must point the emulator variable at this Azurite.
    monkeypatch.setenv(EMULATOR_URL_VARIABLE, "http://127.0.0.1:9")
    container = f"lake-{uuid.uuid4().hex[:12]}"
    ContainerClient.from_connection_string(azurite.connection_string, container).create_container()
    options = {
        "azure_storage_account_name": AZURITE_ACCOUNT,
        "azure_storage_account_key": AZURITE_KEY,
        "azure_storage_endpoint": azurite.endpoint,
        "allow_http": "true",
    }
    lake = f"az://{container}/lake"
    uri = write_costs(lake, options)
    database = tmp_path / "views.duckdb"
    with duckdb.connect(str(database)) as con:
        assert attach_lake_views(con, lake, options) == ["lake_usage_costs"]
    read_back(database, lake, uri, options)


def test_marts_file_carries_the_lake_views(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    write_costs(lake)
    built = build_marts(REPO_ROOT / "dbt_like_sql", lake, tmp_path / "marts.duckdb")
    assert (built.lake_views, built.lake_views_skipped) == (["lake_usage_costs"], None)
    with duckdb.connect(str(tmp_path / "marts.duckdb"), read_only=True) as con:
        views = con.execute("select view_name from duckdb_views() where not internal").fetchall()
    assert views == [("lake_usage_costs",)]


def test_marts_build_without_the_extension_skips_the_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(name: str, version: str) -> Path:
        raise ExtensionUnavailable(f"{name} extension not available")

    monkeypatch.setattr(lake_views, "extension_file", unavailable)
    lake = str(tmp_path / "lake")
    write_costs(lake)
    built = build_marts(REPO_ROOT / "dbt_like_sql", lake, tmp_path / "marts.duckdb")
    assert built.runs and built.lake_views == []
    assert built.lake_views_skipped == "skipped: delta extension not available"


def test_secrets_from_object_store_options(monkeypatch: pytest.MonkeyPatch) -> None:
    keyed = azure_secret_sql(
        "az://c/lake", {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "azure_storage_account_key": "k'ey"}
    )
    assert "AccountName=acct;AccountKey=k''ey;" in keyed
    assert "BlobEndpoint=https://acct.blob.core.windows.net;" in keyed
    chain = azure_secret_sql("abfss://c@acct.dfs.core.windows.net/lake", {"account_name": "acct"})
    assert "provider credential_chain, account_name 'acct'" in chain
    assert chain.endswith("scope 'abfss://c@acct.dfs.core.windows.net/lake')")
    monkeypatch.setenv(EMULATOR_URL_VARIABLE, "http://127.0.0.1:10999")
    emulator = azure_secret_sql("az://c/lake", {"azure_storage_use_emulator": "true"})
    assert f"AccountKey={EMULATOR_KEY};" in emulator
    assert "BlobEndpoint=http://127.0.0.1:10999/devstoreaccount1;" in emulator
    with pytest.raises(ValueError, match="account name"):
        azure_secret_sql("az://c/lake", {})
