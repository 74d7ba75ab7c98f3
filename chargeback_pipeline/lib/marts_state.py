"""What a marts file was built from, kept in the file itself (table `_marts_state`): each lake
table's Delta id and version, and a fingerprint of the models, models.yml, seeds and vars."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from chargeback_pipeline.lib.sql_models import SqlModel

STATE_TABLE = "_marts_state"
STATE_FORMAT = "1"
"""Part of the fingerprint: bump it when the build's semantics change, to force a full rebuild."""


@dataclass(frozen=True)
class SourceVersion:
    """One lake table as a build read it; version and table_id are None if it did not exist."""

    source: str
    uri: str
    table_id: str | None
    version: int | None


@dataclass(frozen=True)
class BuildState:
    fingerprint: str
    sources: tuple[SourceVersion, ...]


def read_state(con: duckdb.DuckDBPyConnection) -> BuildState | None:
    """The state the last committed build recorded; None for a new or pre-state file."""
    # no bound parameter: binding one makes DuckDB import pandas, a third of a second
    found = con.execute(
        "select count(*) from duckdb_tables()"
        f" where table_name = '{STATE_TABLE}' and schema_name = current_schema()"
    ).fetchone()
    if not found or not found[0]:
        return None
    rows = con.execute(
        f"select source, uri, table_id, version, fingerprint from {STATE_TABLE} order by source"
    ).fetchall()
    fingerprints = {row[4] for row in rows}
    if len(fingerprints) != 1:
        return None
    sources = tuple(
        SourceVersion(str(source), str(uri), table_id, version)
        for source, uri, table_id, version, _ in rows
        if source is not None
    )
    return BuildState(str(fingerprints.pop()), sources)


def write_state(con: duckdb.DuckDBPyConnection, state: BuildState, built_at: datetime) -> None:
    """Replace the recorded state (inside the build's transaction, so both commit together)."""
    con.execute(
        f"create or replace table {STATE_TABLE} (source varchar, uri varchar, table_id varchar,"
        " version bigint, fingerprint varchar, built_at timestamp with time zone)"
    )
    # a build without lake sources still records its fingerprint, on a row with no source
    rows: list[tuple[str | int | None, ...]] = [
        (s.source, s.uri, s.table_id, s.version) for s in state.sources
    ] or [(None, None, None, None)]
    con.executemany(
        f"insert into {STATE_TABLE} values (?, ?, ?, ?, ?, ?)",
        [(*row, state.fingerprint, built_at) for row in rows],
    )


def models_fingerprint(
    models: Iterable[SqlModel],
    docs_path: Path,
    seed_paths: Iterable[Path],
    variables: Mapping[str, object],
    schemas: Mapping[str, object],
) -> str:
    """A digest of everything besides the lake that a build's result depends on."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        # length-prefixed, so no two different inputs concatenate to the same bytes
        digest.update(f"{label}\0{len(data)}\0".encode() + data)

    add("format", f"{STATE_FORMAT}/duckdb {duckdb.__version__}".encode())
    for model in sorted(models, key=lambda m: m.name):
        add(f"model {model.layer}/{model.name}", model.sql.encode())
    add("docs", docs_path.read_bytes() if docs_path.is_file() else b"")
    for path in sorted(seed_paths):
        add(f"seed {path.name}", path.read_bytes() if path.is_file() else b"\0missing")
    for name in sorted(variables):
        value = variables[name]
        add(f"var {name}", f"{type(value).__name__}:{value}".encode())
    for name in sorted(schemas):
        add(f"schema {name}", repr(schemas[name]).encode())
    return digest.hexdigest()
