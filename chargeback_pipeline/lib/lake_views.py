"""DuckDB views over the lake's Delta tables, with DuckDB's Delta extension loaded offline."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import duckdb

from chargeback_pipeline.lib.delta import table_exists, table_uri

LAKE_TABLES = ("usage_events", "usage_costs", "quarantined_envelopes")
SECRET_NAME = "chargeback_lake"
AZURE_PREFIXES = ("az://", "azure://", "abfs://", "abfss://")

EMULATOR_ACCOUNT = "devstoreaccount1"
# Azurite's published development key: public by design, valid only against the emulator.
EMULATOR_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
EMULATOR_URL_VARIABLE = "AZURITE_BLOB_STORAGE_URL"

# object_store's names for the same setting (its keys are case-insensitive).
_ACCOUNT = ("azure_storage_account_name", "account_name")
_KEY = (
    "azure_storage_account_key",
    "azure_storage_access_key",
    "azure_storage_master_key",
    "account_key",
    "access_key",
    "master_key",
)
_SAS = ("azure_storage_sas_key", "azure_storage_sas_token", "sas_key", "sas_token")
_ENDPOINT = ("azure_storage_endpoint", "azure_endpoint", "endpoint")
_EMULATOR = ("azure_storage_use_emulator", "use_emulator")


class ExtensionUnavailable(RuntimeError):
    """A DuckDB extension's PyPI package is missing, so it cannot be loaded without a download."""


def view_name(table: str) -> str:
    """The marts-file view over one lake table."""
    return f"lake_{table}"


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal."""
    # CREATE VIEW / CREATE SECRET take no bound parameters: values are inlined, quotes doubled.
    return "'" + text.replace("'", "''") + "'"


def is_azure(lake: str) -> bool:
    """Whether the lake root is a Blob Storage URI rather than a local folder."""
    return lake.startswith(AZURE_PREFIXES)


def extension_file(name: str, duckdb_version: str) -> Path:
    """The binary shipped by the `duckdb-extension-<name>` wheel for this DuckDB version."""
    hint = f"pip install duckdb-extension-{name}=={duckdb_version.lstrip('v')}"
    try:
        package = resources.files(f"duckdb_extension_{name}")
    except ModuleNotFoundError as error:
        raise ExtensionUnavailable(f"{name} extension not available: {hint}") from error
    path = Path(str(package)) / "extensions" / duckdb_version / f"{name}.duckdb_extension"
    if not path.is_file():
        raise ExtensionUnavailable(f"{name} extension not available for DuckDB {duckdb_version}")
    return path


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load an extension straight from its wheel: no download, nothing written to ~/.duckdb."""
    row = con.execute("pragma version").fetchone()
    version = str(row[0]) if row else f"v{duckdb.__version__}"
    con.execute(f"load {sql_literal(str(extension_file(name, version)))}")


def load_delta_extension(con: duckdb.DuckDBPyConnection) -> None:
    """Make `delta_scan` available on this connection."""
    load_extension(con, "delta")


def open_lake(
    con: duckdb.DuckDBPyConnection, lake: str, storage_options: dict[str, str] | None = None
) -> None:
    """Load what `delta_scan` needs for this lake: Delta, and for Blob Storage azure + a secret."""
    load_delta_extension(con)
    if is_azure(lake):
        load_extension(con, "azure")
        con.execute(azure_secret_sql(lake, storage_options or {}))


def attach_lake_views(
    con: duckdb.DuckDBPyConnection, lake: str, storage_options: dict[str, str] | None = None
) -> list[str]:
    """Create or replace `lake_<table>` views over the tables that exist; returns their names."""
    open_lake(con, lake, storage_options)
    created = []
    for table in LAKE_TABLES:
        uri = table_uri(lake, table)
        if not table_exists(uri, storage_options):
            # A view over a missing table would fail every query; a stale one would mislead.
            con.execute(f"drop view if exists {view_name(table)}")
            continue
        scan = f"select * from delta_scan({sql_literal(uri)})"
        con.execute(f"create or replace view {view_name(table)} as {scan}")
        created.append(view_name(table))
    return created


def azure_secret_sql(lake: str, storage_options: dict[str, str]) -> str:
    """A temporary DuckDB secret (this connection only, never written to disk) for the lake."""
    options = {key.lower(): value for key, value in storage_options.items() if value}
    connection_string = azure_connection_string(options)
    if connection_string:
        auth = f"connection_string {sql_literal(connection_string)}"
    else:
        account = _first(options, _ACCOUNT)
        if not account:
            raise ValueError("a Blob Storage lake needs an account name or a key in its options")
        auth = f"provider credential_chain, account_name {sql_literal(account)}"
    return (
        f"create or replace temporary secret {SECRET_NAME} "
        f"(type azure, {auth}, scope {sql_literal(lake)})"
    )


def azure_connection_string(options: dict[str, str]) -> str | None:
    """An account-key or SAS connection string from object_store options; None without either."""
    account, key, sas = _first(options, _ACCOUNT), _first(options, _KEY), _first(options, _SAS)
    endpoint = _first(options, _ENDPOINT)
    if _first(options, _EMULATOR).lower() == "true":
        account, key = account or EMULATOR_ACCOUNT, key or EMULATOR_KEY
        base = os.environ.get(EMULATOR_URL_VARIABLE, "http://127.0.0.1:10000")
        endpoint = endpoint or f"{base.rstrip('/')}/{account}"
    if not account or not (key or sas):
        return None
    endpoint = (endpoint or f"https://{account}.blob.core.windows.net").rstrip("/")
    if account == EMULATOR_ACCOUNT:
        _point_emulator_at(endpoint)
    credential = f"AccountKey={key}" if key else f"SharedAccessSignature={sas.lstrip('?')}"
    protocol = endpoint.split("://", 1)[0]
    return (
        f"DefaultEndpointsProtocol={protocol};AccountName={account};{credential};"
        f"BlobEndpoint={endpoint};"
    )


def _point_emulator_at(endpoint: str) -> None:
    # The Delta extension switches object_store to emulator mode for devstoreaccount1, and that
    # mode reads the endpoint only from this variable (default port 10000), not from the secret.
    os.environ[EMULATOR_URL_VARIABLE] = endpoint.removesuffix(f"/{EMULATOR_ACCOUNT}")


def _first(options: dict[str, str], keys: tuple[str, ...]) -> str:
    return next((options[key] for key in keys if options.get(key)), "")
