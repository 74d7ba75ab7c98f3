"""The lake tables a marts build reads, pinned to one Delta version: read whole or by day, and
which days changed since a recorded version (the `hour` partitions of files added or removed)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from chargeback_pipeline.lib.delta import table_exists
from chargeback_pipeline.lib.tables import conform

PARTITION = "hour"
"""Partition column of every lake table: 'YYYY-MM-DD-HH:00' of the call's UTC timestamp."""


class FullRebuildNeeded(Exception):
    """What changed in the lake since the recorded build cannot be told by day."""


@dataclass(frozen=True)
class PinnedTable:
    """A lake table at the version loaded when the build began (None: it does not exist)."""

    uri: str
    table: DeltaTable | None

    @property
    def version(self) -> int | None:
        return None if self.table is None else self.table.version()

    @property
    def table_id(self) -> str | None:
        # Delta gives every table a fresh id at creation: a recreated table is a new table
        return None if self.table is None else str(self.table.metadata().id)


def pin_table(uri: str, storage_options: dict[str, str] | None = None) -> PinnedTable:
    """The table's current version; reads and diffs then use exactly that version."""
    if not table_exists(uri, storage_options):
        return PinnedTable(uri, None)
    return PinnedTable(uri, DeltaTable(uri, storage_options=storage_options))


def read_pinned(
    pinned: PinnedTable, schema: dict[str, pl.DataType], days: Iterable[date] | None = None
) -> pl.DataFrame:
    """The pinned version's rows: all of them, or only those of the hour partitions of `days`."""
    if pinned.table is None:
        return pl.DataFrame(schema=schema)
    scan = pl.scan_delta(pinned.table)
    if days is not None:
        scan = scan.filter(pl.col(PARTITION).is_in(hours_of_days(pinned.table, days)))
    return conform(scan.collect(), schema)


def hours_of_days(table: DeltaTable, days: Iterable[date]) -> list[str]:
    """The table's partition values that fall on `days` (all 24 hours of each, where present)."""
    wanted = [day.isoformat() for day in days]
    hours = partition_files(table)[PARTITION].unique().sort()
    return hours.filter(hours.str.slice(0, 10).is_in(wanted)).to_list()


def partition_files(table: DeltaTable) -> pl.DataFrame:
    """One row per data file of the table's version: `file` (path and any deletion vector, the
    file's identity: Delta never rewrites a file in place) and its `hour`."""
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    column = f"partition.{PARTITION}"
    if actions.is_empty():
        return pl.DataFrame(schema={"file": pl.String, PARTITION: pl.String})
    if column not in actions.columns:
        raise FullRebuildNeeded(f"{table.table_uri} is not partitioned by {PARTITION}")
    identity = ["path", *sorted(name for name in actions.columns if name.startswith("deletion"))]
    return actions.select(
        pl.concat_str(
            [pl.col(name).cast(pl.String).fill_null("") for name in identity], separator="|"
        ).alias("file"),
        pl.col(column).alias(PARTITION),
    )


def changed_days(
    pinned: PinnedTable,
    version: int | None,
    table_id: str | None,
    storage_options: dict[str, str] | None = None,
) -> frozenset[date]:
    """Days whose files differ between the recorded version (None: the table did not exist)
    and the pinned one; raises FullRebuildNeeded when the two cannot be compared."""
    if pinned.table is None:
        if version is None:
            return frozenset()
        raise FullRebuildNeeded(f"{pinned.uri} no longer exists")
    if version is None:
        return days_of(partition_files(pinned.table)[PARTITION])
    if table_id != pinned.table_id:
        raise FullRebuildNeeded(f"{pinned.uri} was recreated")
    if version == pinned.version:
        return frozenset()
    previous = partition_files(load_version(pinned, version, storage_options))
    current = partition_files(pinned.table)
    added = current.join(previous, on=["file", PARTITION], how="anti")
    removed = previous.join(current, on=["file", PARTITION], how="anti")
    return days_of(pl.concat([added, removed])[PARTITION])


def load_version(
    pinned: PinnedTable, version: int, storage_options: dict[str, str] | None = None
) -> DeltaTable:
    """The table at a recorded version; its log may have been cleaned up since."""
    if pinned.version is not None and version > pinned.version:
        raise FullRebuildNeeded(f"{pinned.uri} is at version {pinned.version}, before {version}")
    try:
        return DeltaTable(pinned.uri, version=version, storage_options=storage_options)
    except (DeltaError, OSError, ValueError) as error:
        raise FullRebuildNeeded(
            f"{pinned.uri} version {version} can no longer be loaded ({error})"
        ) from error


def days_of(hours: pl.Series) -> frozenset[date]:
    """The UTC days of hour partition values ('YYYY-MM-DD-HH:00': the day is the first 10)."""
    unique = hours.unique()
    days = unique.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    unreadable = unique.filter(days.is_null() | (unique.str.len_chars() < 10))
    if len(unreadable):
        raise FullRebuildNeeded(f"partition {PARTITION}={unreadable[0]!r} names no day")
    return frozenset(days.to_list())
