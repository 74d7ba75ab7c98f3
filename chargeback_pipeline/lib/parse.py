"""Parse stored envelopes into content-free rows, slice by slice on every core for large hours.

Workers run `parsed_rows` (no Polars, pandera or Dagster, so they start quickly) and send back
columns; the frames are made here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TypeVar

import polars as pl

from chargeback_pipeline.lib.fast_parse import ROW_COLUMNS
from chargeback_pipeline.lib.parsed_rows import (
    REJECT_COLUMNS,
    Columns,
    S,
    Stored,
    columns_of,
    parse_rows,
    slice_columns,
)
from chargeback_pipeline.lib.tables import QUARANTINED_ENVELOPES, USAGE_EVENTS
from chargeback_pipeline.lib.workers import WorkerPool

_DERIVED_LATER = ("hour", "deployment_type", "billing")
PARSED_ENVELOPES: dict[str, pl.DataType] = {
    **{k: v for k, v in USAGE_EVENTS.items() if k not in _DERIVED_LATER},
    "source_line": pl.Int64(),
}
_ROWS = {**PARSED_ENVELOPES, "timestamp": pl.Int64()}
"""Rows as parsed: the timestamp in microseconds (`timestamp_micros`), made a datetime per frame."""
QUARANTINE_CANDIDATES = {k: v for k, v in QUARANTINED_ENVELOPES.items() if k != "detected_at"}
REJECTED = {k: v for k, v in QUARANTINE_CANDIDATES.items() if k != "hour"}
T = TypeVar("T")
R = TypeVar("R")
ParsedBatch = tuple[pl.DataFrame, pl.DataFrame]


def parse_envelopes(stored: Iterable[Stored], pseudonym_key: bytes) -> ParsedBatch:
    """Parse each envelope into a content-free row, or a quarantine candidate with its reason.

    The fast path reads most envelopes; whatever it is unsure of takes the reference path.
    """
    return _parse(stored, pseudonym_key, fast=True)


def parse_envelopes_reference(stored: Iterable[Stored], pseudonym_key: bytes) -> ParsedBatch:
    """`parse_envelopes` by the reference path alone (orjson + envelope_row), for comparison."""
    return _parse(stored, pseudonym_key, fast=False)


def _parse(stored: Iterable[Stored], pseudonym_key: bytes, fast: bool) -> ParsedBatch:
    rows, rejects = parse_rows(stored, pseudonym_key, fast)
    return _frames(columns_of(rows), columns_of(rejects))


def _frames(rows: Columns, rejects: Columns) -> ParsedBatch:
    """Parsed rows and quarantine candidates, given column by column, as frames of
    PARSED_ENVELOPES and REJECTED (Polars takes typed columns faster than rows)."""
    parsed = _frame(rows, ROW_COLUMNS, _ROWS)
    timestamps = pl.col("timestamp").cast(PARSED_ENVELOPES["timestamp"])
    return parsed.with_columns(timestamps), _frame(rejects, REJECT_COLUMNS, REJECTED)


def _frame(columns: Columns, names: Sequence[str], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    values = columns or [()] * len(names)
    series = [
        pl.Series(name, column, dtype=schema[name])
        for name, column in zip(names, values, strict=True)
    ]
    return pl.DataFrame(series).select(list(schema))


def parse_hour(stored: Iterable[Stored], pseudonym_key: bytes) -> ParsedBatch:
    """Parse envelopes already in memory, in this process (the asset reads slices instead)."""
    return parse_envelopes(stored, pseudonym_key)


def parse_slices(
    read: Callable[[S], tuple[Sequence[Stored], int]],
    slices: Sequence[S],
    pseudonym_key: bytes,
    workers: int = 1,
) -> Iterator[ParsedBatch]:
    """Parse an hour slice by slice; each worker reads its own slices, so no bytes are copied
    between processes and at most two slices per worker are in memory at once.

    `read(slice)` returns the slice's envelopes with lines numbered within the slice and its
    line count; line numbers are shifted here to count from the start of their object.
    """
    parse = partial(slice_columns, read, pseudonym_key=pseudonym_key)
    shifts: dict[str, int] = {}
    for part, (rows, rejects, lines) in zip(slices, _in_order(parse, slices, workers), strict=True):
        shift = shifts.get(part.name, 0)
        shifts[part.name] = shift + lines
        parsed, rejected = _frames(rows, rejects)
        yield _shift_lines(parsed, shift), _shift_lines(rejected, shift)


def _shift_lines(frame: pl.DataFrame, shift: int) -> pl.DataFrame:
    return frame.with_columns(pl.col("source_line") + shift) if shift else frame


def _in_order(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`function` over items, in order; in worker processes when `workers` > 1 and there is
    more than one item (starting a worker costs about half a second)."""
    pending = iter(items)
    first = next(pending, None)
    if first is None:
        return
    second = next(pending, None)
    if second is None or workers <= 1:
        rest = [] if second is None else [second]
        yield from map(function, itertools.chain([first], rest, pending))
        return
    with WorkerPool(workers) as pool:
        yield from pool.map(function, itertools.chain([first, second], pending))
