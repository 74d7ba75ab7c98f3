"""`chargeback sql`: the marts file read-only, with the lake's `lake_*` views and `delta_scan`."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import duckdb

from chargeback_pipeline.lib.lake_views import open_lake
from chargeback_pipeline.settings import Settings

PROMPT = "chargeback> "
QUIT = {".quit", ".exit", "quit", "exit"}
NAME_LINE = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)
MAX_ROWS = 200


@dataclass(frozen=True)
class NamedQuery:
    """One query of a cookbook file: its `-- name:` slug (or `query`) and its SQL."""

    name: str
    sql: str


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The marts file, read-only, with what the `lake_*` views need loaded."""
    if not settings.duckdb_path.exists():
        raise FileNotFoundError(
            f"no marts at {settings.duckdb_path}: run `chargeback materialize` or "
            "`chargeback demo` first"
        )
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        open_lake(con, settings.lake, settings.lake_storage_options())
    except Exception:
        con.close()
        raise
    return con


def split_named(text: str, default: str = "query") -> list[NamedQuery]:
    """Split a file on `-- name: <slug>` lines; text before the first name is `default`."""
    parts = NAME_LINE.split(text)
    queries = [NamedQuery(default, parts[0].strip())] if parts[0].strip() else []
    for name, sql in zip(parts[1::2], parts[2::2], strict=True):
        queries.append(NamedQuery(name, sql.strip()))
    return [query for query in queries if _has_statement(query.sql)]


def _has_statement(sql: str) -> bool:
    code = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return bool(code.strip(" \n\t;"))


def missing_parameters(sql: str, params: Mapping[str, object]) -> set[str]:
    """Named parameters (`$name`) the SQL uses that `params` does not give."""
    con = duckdb.connect()
    try:
        used = set().union(*(s.named_parameters for s in con.extract_statements(sql)))
    finally:
        con.close()
    return used - set(params)


def run(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, object] | None = None
) -> Iterator[duckdb.DuckDBPyRelation | None]:
    """Run each statement of `sql`; parameters are bound (each statement gets the ones it uses)."""
    params = dict(params or {})
    for statement in con.extract_statements(sql):
        bound = {name: params[name] for name in statement.named_parameters if name in params}
        yield con.sql(statement.query, params=bound or None)


def show(relation: duckdb.DuckDBPyRelation | None, out: TextIO) -> None:
    """A result as DuckDB's box table; statements without a result print nothing."""
    if relation is not None:
        out.write(str(relation) if relation.shape[0] <= MAX_ROWS else _long(relation))
        out.flush()


def _long(relation: duckdb.DuckDBPyRelation) -> str:
    return str(relation.limit(MAX_ROWS)) + f"({relation.shape[0]} rows, first {MAX_ROWS} shown)\n"


def run_script(
    con: duckdb.DuckDBPyConnection,
    text: str,
    params: Mapping[str, object] | None = None,
    names: set[str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Run every (or each named) query of a script and print it; 0, or 1 if any failed."""
    out = out or sys.stdout
    params = params or {}
    queries = split_named(text)
    if names:
        unknown = names - {query.name for query in queries}
        if unknown:
            print(f"no query named {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        queries = [query for query in queries if query.name in names]
    status = 0
    for query in queries:
        if len(queries) > 1:
            out.write(f"-- {query.name}\n")
        missing = missing_parameters(query.sql, params)
        if missing:
            flags = " ".join(f"--param {name}=..." for name in sorted(missing))
            print(f"{query.name}: skipped, needs {flags}", file=sys.stderr)
            status = 1
            continue
        try:
            for relation in run(con, query.sql, params):
                show(relation, out)
        except duckdb.Error as error:
            print(f"{query.name}: {error}", file=sys.stderr)
            status = 1
    return status


def interactive(
    con: duckdb.DuckDBPyConnection,
    params: Mapping[str, object] | None = None,
    out: TextIO | None = None,
) -> int:
    """Read a statement per line with `input`, run and print it; `.quit` or end of input leaves."""
    out = out or sys.stdout
    while True:
        try:
            line = input(PROMPT).strip()
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return 0
        if line in QUIT:
            return 0
        if not _has_statement(line):
            continue
        try:
            missing = missing_parameters(line, params or {})
            if missing:
                print(f"needs --param {', '.join(sorted(missing))}=...", file=sys.stderr)
                continue
            for relation in run(con, line, params):
                show(relation, out)
        except duckdb.Error as error:
            print(f"error: {error}", file=sys.stderr)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`name=value` pairs from `--param`."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--param takes name=value, not {pair!r}")
        params[name.lstrip("$")] = value
    return params


def main(
    settings: Settings,
    query: str | None,
    file: Path | None,
    params: Mapping[str, object],
    names: set[str] | None = None,
) -> int:
    """What `chargeback sql` does; see its help."""
    if query is None and file is None and not sys.stdin.isatty():
        query = sys.stdin.read()
    with connect(settings) as con:
        if file is not None:
            status = run_script(con, file.read_text(), params, names)
            if status or query is None:
                return status
        if query is not None:
            return run_script(con, query, params, names)
        return interactive(con, params)
