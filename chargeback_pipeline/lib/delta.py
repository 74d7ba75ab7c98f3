"""Delta tables of the lake: one hour replaced atomically, reads filtered by hour."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from chargeback_pipeline.lib.storage_options import is_remote
from chargeback_pipeline.lib.tables import conform

FILE_BYTES = 32 * 1024 * 1024
"""Parquet file size at which the next frame starts a new file."""
WRITE_LANES = 2
"""Files of one hour written at once, one thread each."""
PARTITION = "hour"
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
    """`replace_hour` for an hour streamed as frames: still one commit, a frame or two in memory.

    Frames are made in a background thread (so they may come from reading another Delta table)
    and written to Parquet files as they come; the files are committed together at the end.
    delta-rs's own writer would hold the whole stream in memory before writing a file.
    """
    table_schema = conform(pl.DataFrame(schema=schema), schema).to_arrow().schema
    with _HourFiles(uri, hour, table_schema, storage_options) as files, _Ahead(frames) as ahead:
        for frame in ahead:
            files.write(conform(frame, schema))
        added = files.close()
    _commit(uri, added, hour, table_schema, storage_options)


def _commit(
    uri: str,
    added: list[AddAction],
    hour: str,
    table_schema: pa.Schema,
    options: dict[str, str] | None,
) -> None:
    """One commit: the hour's files replace its previous ones (a new table is created)."""
    if not table_exists(uri, options):
        create_table_with_add_actions(
            uri,
            DeltaSchema.from_arrow(table_schema),
            added,
            mode="append",
            partition_by=[PARTITION],
            storage_options=options,
        )
        return
    actions: list[AddAction | RemoveAction] = list(added)
    DeltaTable(uri, storage_options=options).create_write_transaction(
        actions,
        mode="overwrite",
        schema=table_schema,
        partition_by=[PARTITION],
        partition_filters=[(PARTITION, "=", hour)],
    )


class _HourFiles:
    """An hour's rows written as Parquet files through delta-rs's object store (a local folder
    or Blob Storage alike), ready to be committed. Frames go to WRITE_LANES files in turn, each
    encoded in its own thread: pyarrow encodes one file on one core."""

    def __init__(
        self, uri: str, hour: str, table_schema: pa.Schema, options: dict[str, str] | None
    ) -> None:
        self._hour = hour
        if not is_remote(uri):
            Path(uri).mkdir(parents=True, exist_ok=True)  # the store opens an existing root
        store = pafs.PyFileSystem(DeltaStorageHandler(uri, options))
        file_schema = table_schema.remove(table_schema.get_field_index(PARTITION))
        self._lanes = [_FileLane(store, hour, file_schema) for _ in range(WRITE_LANES)]
        self._writing: list[Future[None] | None] = [None] * WRITE_LANES
        self._pool = ThreadPoolExecutor(WRITE_LANES, thread_name_prefix="parquet-lane")
        self._frames = 0

    def __enter__(self) -> _HourFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()

    def write(self, frame: pl.DataFrame) -> None:
        """Append a frame's rows (the partition column lives in the log, not in the files)."""
        if frame.is_empty():
            return
        stray = frame.filter(pl.col(PARTITION).ne_missing(self._hour))
        if stray.height:
            found = stray[PARTITION][0]
            raise ValueError(f"a row of hour {found!r} was written to hour {self._hour!r}")
        lane = self._frames % WRITE_LANES
        self._frames += 1
        self._wait(lane)  # a lane writes its frames in order, one at a time
        table = frame.drop(PARTITION).to_arrow()
        self._writing[lane] = self._pool.submit(self._lanes[lane].write, table)

    def close(self) -> list[AddAction]:
        """Finish every file; the files to commit."""
        for lane in range(WRITE_LANES):
            self._wait(lane)
        return [added for lane in self._lanes for added in lane.close()]

    def _wait(self, lane: int) -> None:
        writing = self._writing[lane]
        if writing is not None:
            writing.result()  # raises the lane's error here


class _FileLane:
    """Parquet files of about FILE_BYTES written one after another."""

    def __init__(self, store: pafs.FileSystem, hour: str, file_schema: pa.Schema) -> None:
        self._store, self._hour, self._schema = store, hour, file_schema
        self._added: list[AddAction] = []
        self._open: tuple[str, Any, pq.ParquetWriter] | None = None
        self._rows = 0

    def write(self, table: pa.Table) -> None:
        """Append rows to the open file; start the next one once it passes FILE_BYTES."""
        _, sink, writer = self._open or self._start()
        writer.write_table(table, row_group_size=BATCH_ROWS)
        self._rows += table.num_rows
        if sink.tell() >= FILE_BYTES:
            self._finish()

    def close(self) -> list[AddAction]:
        """Finish the last file; the files written."""
        if self._open is not None:
            self._finish()
        return self._added

    def _start(self) -> tuple[str, Any, pq.ParquetWriter]:
        # Laid out as delta-rs lays its files out (the commit URL-encodes the path once more):
        # readers such as Polars take the partition value from the folder name.
        path = f"{PARTITION}={quote(self._hour, safe='')}/part-{uuid.uuid4()}-c000.zstd.parquet"
        sink = self._store.open_output_stream(path)
        writer = pq.ParquetWriter(sink, self._schema, compression="zstd")
        self._open = (path, sink, writer)
        return self._open

    def _finish(self) -> None:
        assert self._open is not None
        path, sink, writer = self._open
        writer.close()
        size = sink.tell()
        sink.close()
        self._added.append(
            AddAction(
                path=path,
                size=size,
                partition_values={PARTITION: self._hour},
                modification_time=int(time.time() * 1000),
                data_change=True,
                # Row counts only: min/max would copy ids and pseudonyms into the log.
                stats=json.dumps({"numRecords": self._rows}),
            )
        )
        self._open, self._rows = None, 0


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
    """One hour's rows as frames of at most `batch_rows` (nothing when the table does not exist).

    Read file by file, a slice of rows at a time (Parquet row groups are BATCH_ROWS), so memory
    follows `batch_rows`, not the hour: a streaming scan of the hour held ~0.4 KB per row.
    """
    if not table_exists(uri, storage_options):
        return
    table = DeltaTable(uri, storage_options=storage_options)
    for file in table.file_uris(partition_filters=[(PARTITION, "=", hour)]):
        scan = pl.scan_parquet(file, storage_options=storage_options, hive_partitioning=False)
        rows = scan.select(pl.len()).collect().item()
        # Batches of equal size: written back through WRITE_LANES, they keep every lane busy.
        batches = -(-rows // batch_rows)
        size = -(-rows // batches) if batches else batch_rows
        for start in range(0, rows, size):
            # The partition value lives in the log, not in the file.
            batch = scan.slice(start, size).with_columns(pl.lit(hour).alias(PARTITION))
            yield conform(batch.collect(), schema)


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
