"""Rows of an hour too large to hold at once: Arrow IPC parts in a scratch folder, by bucket."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl

PENDING_ROWS = 25_000
"""Rows buffered before they are split into buckets and written (about 12 MB of parsed rows)."""
FILE_ROWS = 500
"""The fewest rows a bucket's file should hold on average, so many buckets buffer more rows."""


class FrameParts:
    """Frames appended one by one and read back together (`collect_parts`); on disk when given
    a folder."""

    def __init__(self, schema: dict[str, pl.DataType], folder: Path | None = None) -> None:
        self.schema = schema
        self.rows = 0
        self._folder = folder
        self._frames: list[pl.DataFrame] = []
        self._files: list[Path] = []
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def append(self, frame: pl.DataFrame) -> None:
        """Keep one frame (empty frames are not kept)."""
        if frame.is_empty():
            return
        self.rows += frame.height
        if self._folder is None:
            self._frames.append(frame)
            return
        path = self._folder / f"{len(self._files):06d}.arrow"
        # Uncompressed: the parts live for minutes and are read back once.
        frame.write_ipc(path, compression="uncompressed")
        self._files.append(path)

    def extend(self, frames: Iterable[pl.DataFrame]) -> None:
        """Keep each frame in turn."""
        for frame in frames:
            self.append(frame)

    def collect(self) -> pl.DataFrame:
        """Every part as one frame."""
        return collect_parts([self])


def collect_parts(parts: list[FrameParts]) -> pl.DataFrame:
    """Every frame of several FrameParts as one frame: those kept in memory, then the files in
    order, read in one scan (four times faster than one by one and concatenated)."""
    frames = [pl.DataFrame(schema=parts[0].schema)] if parts else []
    frames += [frame for part in parts for frame in part._frames]
    files = [path for part in parts for path in part._files]
    if files:
        frames.append(pl.scan_ipc(files).collect())
    return pl.concat(frames, rechunk=True)


class BucketSpill:
    """Rows split into buckets by a hash of `key`: every row of one key lands in one bucket, so
    each bucket can be deduplicated alone while the others stay on disk."""

    def __init__(
        self,
        key: str,
        buckets: int,
        schema: dict[str, pl.DataType],
        folder: Path | None = None,
        pending_rows: int = PENDING_ROWS,
    ) -> None:
        self._key = key
        self._parts = [
            FrameParts(schema, folder / f"bucket-{index:04d}" if folder else None)
            for index in range(max(1, buckets))
        ]
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        # More buckets need a bigger buffer, or each write leaves a tiny file per bucket.
        self._limit = max(pending_rows, FILE_ROWS * len(self._parts))
        # Buffers are split and written in a thread (Polars releases the GIL), so the caller
        # goes on taking slices from the parse workers meanwhile instead of leaving them idle;
        # one write at a time keeps memory to two buffers.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="bucket-spill")
        self._writing: Future[None] | None = None

    def add(self, frame: pl.DataFrame) -> None:
        """Buffer rows; write them to their buckets once the buffer is full."""
        self._pending.append(frame)
        self._pending_rows += frame.height
        if self._pending_rows >= self._limit:
            self._flush()

    def bucket_parts(self) -> list[FrameParts]:
        """Every bucket's parts, once all buffered rows are written (read them in any thread)."""
        self._flush()
        self._wait()
        return list(self._parts)

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = pl.concat(self._pending, rechunk=False)
        self._pending, self._pending_rows = [], 0
        self._wait()
        self._writing = self._writer.submit(self._write, rows)

    def _wait(self) -> None:
        """Let the write in flight end; a failed write raises here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _write(self, rows: pl.DataFrame) -> None:
        if len(self._parts) == 1:
            self._parts[0].append(rows)
            return
        bucket = (pl.col(self._key).hash(seed=0) % len(self._parts)).alias("_bucket")
        split = rows.with_columns(bucket).partition_by("_bucket", as_dict=True, include_key=False)
        for (index,), part in split.items():
            self._parts[int(index)].append(part)


def group_parts(parts: list[FrameParts], max_rows: int, threads: int = 1) -> list[list[FrameParts]]:
    """Consecutive parts in groups of about equal rows, about `max_rows` each (at most 1.5x):
    their count is the multiple of `threads` nearest to rows / max_rows, so that every thread
    finishes as many groups and none waits alone on a last one (as parts allow)."""
    total = sum(part.rows for part in parts)
    rounds = max(round(total / max(max_rows, 1) / threads), 1)
    count = min(len(parts), rounds * threads)
    share = max(total / max(count, 1), 1)
    groups: list[list[FrameParts]] = []
    last, before = -1, 0
    for part in parts:
        # A part joins the group its middle row falls in.
        index = min(count - 1, int((before + part.rows / 2) // share))
        if index != last:
            groups.append([])
            last = index
        groups[-1].append(part)
        before += part.rows
    return groups
