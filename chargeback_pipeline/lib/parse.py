"""Parse stored envelopes into content-free rows, slice by slice on every core for large hours.

Kept free of pandera and Dagster so worker processes start quickly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import polars as pl

from chargeback_pipeline.lib.envelopes import EnvelopeError, decode_envelope, envelope_row
from chargeback_pipeline.lib.fast_parse import ROW_COLUMNS, fast_row
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


class Stored(Protocol):
    """One stored envelope: its object, 1-based line and raw bytes (store.base.StoredEnvelope)."""

    source: str
    line: int
    raw: bytes | memoryview


class Slice(Protocol):
    """Bytes [start, end) of one stored object (store.base.HourSlice)."""

    @property
    def name(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


S = TypeVar("S", bound=Slice)


def parse_envelopes(stored: Iterable[Stored], pseudonym_key: bytes) -> ParsedBatch:
    """Parse each envelope into a content-free row, or a quarantine candidate with its reason.

    The fast path reads most envelopes; whatever it is unsure of takes the reference path.
    """
    return _parse(stored, pseudonym_key, fast=True)


def parse_envelopes_reference(stored: Iterable[Stored], pseudonym_key: bytes) -> ParsedBatch:
    """`parse_envelopes` by the reference path alone (orjson + envelope_row), for comparison."""
    return _parse(stored, pseudonym_key, fast=False)


def _parse(stored: Iterable[Stored], pseudonym_key: bytes, fast: bool) -> ParsedBatch:
    rows: list[tuple[Any, ...]] = []
    rejects: list[dict[str, Any]] = []
    for item in stored:
        row = fast_row(item.raw, item.source, item.line, pseudonym_key) if fast else None
        if row is not None:
            rows.append(row)
            continue
        request_id = None
        try:
            envelope = decode_envelope(item.raw)
            request_id = envelope.get("request_id")
            named = envelope_row(envelope, item.source, item.line, pseudonym_key)
            rows.append(tuple(named[column] for column in ROW_COLUMNS))
        except EnvelopeError as error:
            rejects.append(
                {
                    "source": item.source,
                    "source_line": item.line,
                    "request_id": request_id if isinstance(request_id, str) else None,
                    "reason": str(error),
                }
            )
    return _frame(rows), pl.DataFrame(rejects, schema=REJECTED)


def _frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """Rows in ROW_COLUMNS order as a frame of PARSED_ENVELOPES, built column by column (the
    transpose is one C call; Polars takes typed columns faster than dicts)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(ROW_COLUMNS)
    series = [
        pl.Series(name, values, dtype=_ROWS[name])
        for name, values in zip(ROW_COLUMNS, columns, strict=True)
    ]
    return (
        pl.DataFrame(series)
        .select(list(_ROWS))
        .with_columns(pl.col("timestamp").cast(PARSED_ENVELOPES["timestamp"]))
    )


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
    parse = partial(_parse_slice, read, pseudonym_key=pseudonym_key)
    shifts: dict[str, int] = {}
    for part, (rows, rejects, lines) in zip(slices, _in_order(parse, slices, workers), strict=True):
        shift = shifts.get(part.name, 0)
        shifts[part.name] = shift + lines
        yield _shift_lines(rows, shift), _shift_lines(rejects, shift)


def _parse_slice(
    read: Callable[[S], tuple[Sequence[Stored], int]], part: S, pseudonym_key: bytes
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    stored, lines = read(part)
    rows, rejects = parse_envelopes(stored, pseudonym_key)
    return rows, rejects, lines


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
