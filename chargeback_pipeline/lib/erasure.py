"""Erasure in the lake: a user's pseudonym cleared in place, then removed from disk by vacuum.

An update rewrites the affected files but keeps the old ones for time travel; only a vacuum past
the table's retention (and log cleanup) makes the erasure physical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl
from deltalake import DeltaTable

from chargeback_pipeline.lib.delta import table_exists, table_uri
from chargeback_pipeline.lib.envelopes import pseudonymise

USER_TABLES = ("usage_events", "usage_costs")
"""Tables with a `user_hash` column, in update order: events first, costs are derived."""

PSEUDONYM = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Erasure:
    """Rows no longer attributed to the user, per table, and the hours those rows were in."""

    rows: dict[str, int]
    hours: list[str]


@dataclass(frozen=True)
class TableMaintenance:
    """What compaction and vacuum did to one table."""

    files_compacted: int
    files_written: int
    files_vacuumed: int


def checked_pseudonym(pseudonym: str) -> str:
    """The pseudonym, if it is a lowercase hex HMAC-SHA256: only then is it safe in a predicate."""
    if not PSEUDONYM.fullmatch(pseudonym):
        raise ValueError("a pseudonym is 64 lowercase hex characters")
    return pseudonym


def hours_with_pseudonym(
    uri: str, pseudonym: str, storage_options: dict[str, str] | None = None
) -> list[str]:
    """The hours of a table holding rows of one pseudonym, oldest first."""
    if not table_exists(uri, storage_options):
        return []
    hours = (
        pl.scan_delta(uri, storage_options=storage_options)
        .filter(pl.col("user_hash") == pseudonym)
        .select(pl.col("hour").unique().sort())
        .collect()
    )
    return [str(hour) for hour in hours["hour"]]


def clear_pseudonym(uri: str, pseudonym: str, storage_options: dict[str, str] | None = None) -> int:
    """Set `user_hash` to NULL where it is the pseudonym, in one commit; returns rows changed."""
    if not table_exists(uri, storage_options):
        return 0
    table = DeltaTable(uri, storage_options=storage_options)
    # One transaction: a concurrent rewrite of the same files makes it fail, never lose rows.
    metrics = table.update(
        predicate=f"user_hash = '{checked_pseudonym(pseudonym)}'",
        updates={"user_hash": "NULL"},
    )
    return int(metrics["num_updated_rows"])


def forget_user(
    lake: str, key: bytes, user_id: str, storage_options: dict[str, str] | None = None
) -> Erasure:
    """Detach one user from every usage row; costs stay, attributed to no user."""
    pseudonym = pseudonymise(user_id, key)
    if pseudonym is None:
        raise ValueError("the user id is empty")
    hours = hours_with_pseudonym(table_uri(lake, "usage_events"), pseudonym, storage_options)
    rows = {
        name: clear_pseudonym(table_uri(lake, name), pseudonym, storage_options)
        for name in USER_TABLES
    }
    return Erasure(rows=rows, hours=hours)


def compact_and_vacuum(
    uri: str,
    retention_hours: int,
    storage_options: dict[str, str] | None = None,
    enforce_retention_duration: bool = True,
) -> TableMaintenance | None:
    """Compact small files, vacuum files unreferenced for `retention_hours`, expire old log."""
    if not table_exists(uri, storage_options):
        return None
    table = DeltaTable(uri, storage_options=storage_options)
    compacted = table.optimize.compact()
    # Enforcing the table's own retention keeps vacuum from breaking readers mid-query.
    removed = table.vacuum(
        retention_hours=retention_hours,
        enforce_retention_duration=enforce_retention_duration,
        dry_run=False,
    )
    # Log entries carry column statistics (user_hash min/max): expiring them completes erasure.
    table.create_checkpoint()
    table.cleanup_metadata()
    return TableMaintenance(
        files_compacted=int(compacted["numFilesRemoved"]),
        files_written=int(compacted["numFilesAdded"]),
        files_vacuumed=len(removed),
    )
