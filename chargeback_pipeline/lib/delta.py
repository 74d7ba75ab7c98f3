"""Delta tables of the lake: one hour replaced atomically, reads filtered by hour."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake

from chargeback_pipeline.lib.tables import conform

FILE_BYTES = 32 * 1024 * 1024
"""Target Parquet file size: the writer buffers about one file, so this bounds its memory."""
BATCH_ROWS = 50_000
"""Rows per frame when an hour is read back in batches."""


def table_uri(lake: str, table: str) -> str:
    """The URI of one table under the lake root (a folder or an abfss:// / az:// URI)."""
    return f"{lake.rstrip('/')}/{table}"


def table_exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    """Whether a Delta table has been created at `uri`."""
    return DeltaTable.is_deltatable(uri, storage_options=storage_options)


def replace_hour(
    uri: str,
    frame: pl.DataFrame,
    hour: str,
    schema: dict[str, pl.DataType],
    storage_options: dict[str, str] | None = None,
) -> None:
    """Replace exactly one hour's rows in one commit; other hours and readers are untouched."""
    replace_hour_batches(uri, [frame], hour, schema, storage_options)


def replace_hour_batches(
    uri: str,
    frames: Iterable[pl.DataFrame],
    hour: str,
    schema: dict[str, pl.DataType],
    storage_options: dict[str, str] | None = None,
) -> None:
    """`replace_hour` for an hour streamed as frames: still one commit, a few frames in memory.

    Frames are made in a background thread while the writer encodes the previous ones, so
    they may come from reading another Delta table (delta-rs cannot block inside its writer).
    """
    arrow_schema = conform(pl.DataFrame(schema=schema), schema).to_arrow().schema
    batches = (
        batch for frame in frames for batch in conform(frame, schema).to_arrow().to_batches()
    )
    exists = table_exists(uri, storage_options)
    with _Ahead(batches) as ahead:
        data = pa.RecordBatchReader.from_batches(arrow_schema, ahead)
        try:
            _write(uri, data, hour if exists else None, storage_options)
        except Exception:
            ahead.raise_error()  # the producer's own error, not the writer's wrapping of it
            raise


def _write(
    uri: str, data: pa.RecordBatchReader, hour: str | None, options: dict[str, str] | None
) -> None:
    # A new table is created by appending; an existing one has exactly `hour` replaced.
    properties = WriterProperties(max_row_group_size=BATCH_ROWS)
    if hour is None:
        write_deltalake(
            uri,
            data,
            mode="append",
            partition_by=["hour"],
            storage_options=options,
            target_file_size=FILE_BYTES,
            writer_properties=properties,
        )
        return
    write_deltalake(
        uri,
        data,
        mode="overwrite",
        predicate=f"hour = '{_quoted(hour)}'",
        partition_by=["hour"],
        storage_options=options,
        target_file_size=FILE_BYTES,
        writer_properties=properties,
    )


_END = object()


class _Ahead:
    """Items made by a background thread at most `depth` ahead of the consumer; an error in
    the thread is raised in the consumer."""

    def __init__(self, items: Iterable[Any], depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._make, args=(items,), daemon=True)

    def __enter__(self) -> _Ahead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator[Any]:
        while (item := self._queue.get()) is not _END:
            yield item
        self.raise_error()

    def raise_error(self) -> None:
        """Raise the thread's error, if it failed."""
        if self._error is not None:
            raise self._error

    def _make(self, items: Iterable[Any]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._error = error
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _quoted(hour: str) -> str:
    # Partition keys are validated upstream; doubling quotes keeps the predicate literal anyway.
    return hour.replace("'", "''")


def read_hours(
    uri: str,
    hours: list[str],
    schema: dict[str, pl.DataType],
    storage_options: dict[str, str] | None = None,
) -> pl.DataFrame:
    """The rows of some hours (an empty frame when the table or the hours do not exist)."""
    if not table_exists(uri, storage_options):
        return pl.DataFrame(schema=schema)
    scan = pl.scan_delta(uri, storage_options=storage_options)
    return conform(scan.filter(pl.col("hour").is_in(hours)).collect(), schema)


def read_hour_batches(
    uri: str,
    hour: str,
    schema: dict[str, pl.DataType],
    storage_options: dict[str, str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pl.DataFrame]:
    """One hour's rows as frames of at most `batch_rows` (nothing when the table does not exist)."""
    if not table_exists(uri, storage_options):
        return
    scan = pl.scan_delta(uri, storage_options=storage_options).filter(pl.col("hour") == hour)
    # The streaming engine reads the hour's files chunk by chunk: memory follows batch_rows.
    for batch in scan.collect_batches(chunk_size=batch_rows):
        if batch.height:
            yield conform(batch, schema)


def count_hour_rows(uri: str, hour: str, storage_options: dict[str, str] | None = None) -> int:
    """How many rows one hour holds (0 when the table does not exist)."""
    if not table_exists(uri, storage_options):
        return 0
    scan = pl.scan_delta(uri, storage_options=storage_options)
    return int(scan.filter(pl.col("hour") == hour).select(pl.len()).collect().item())


def read_table(
    uri: str, schema: dict[str, pl.DataType], storage_options: dict[str, str] | None = None
) -> pl.DataFrame:
    """A whole table (an empty frame when it does not exist yet)."""
    if not table_exists(uri, storage_options):
        return pl.DataFrame(schema=schema)
    return conform(pl.scan_delta(uri, storage_options=storage_options).collect(), schema)


def keep_first_detection(
    fresh: pl.DataFrame, previous: pl.DataFrame, now: datetime
) -> pl.DataFrame:
    """Stamp quarantine rows with when they were first detected, so reruns change nothing."""
    keys = ["source", "source_line", "reason"]
    earlier = previous.select(*keys, pl.col("detected_at").alias("_earlier")).unique(keys)
    return (
        fresh.join(earlier, on=keys, how="left", nulls_equal=True)
        .with_columns(pl.coalesce("_earlier", pl.lit(now)).alias("detected_at"))
        .drop("_earlier")
    )
