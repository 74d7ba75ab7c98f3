"""Envelopes into rows of plain values, without Polars: what a parse worker runs.

Importing Polars costs a worker ~0.2 s of CPU before its first slice; the parent, which has
Polars already, makes the frames (`parse.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from chargeback_pipeline.lib.envelopes import EnvelopeError, decode_envelope, envelope_row
from chargeback_pipeline.lib.fast_parse import ROW_COLUMNS, fast_row

REJECT_COLUMNS = ("source", "source_line", "request_id", "reason")
"""The values of a quarantine candidate, in order."""
Columns = list[tuple[Any, ...]]
"""Values column by column, in ROW_COLUMNS (or REJECT_COLUMNS) order; empty when no rows."""


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


def parse_rows(
    stored: Iterable[Stored], pseudonym_key: bytes, fast: bool = True
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Each envelope as a content-free row, or a quarantine candidate with its reason.

    The fast path reads most envelopes; whatever it is unsure of takes the reference path.
    """
    rows: list[tuple[Any, ...]] = []
    rejects: list[tuple[Any, ...]] = []
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
            request_id = request_id if isinstance(request_id, str) else None
            rejects.append((item.source, item.line, request_id, str(error)))
    return rows, rejects


def columns_of(rows: Sequence[tuple[Any, ...]]) -> Columns:
    """Rows turned into columns (one C-level transpose)."""
    return list(zip(*rows, strict=True))


def slice_columns(
    read: Callable[[S], tuple[Sequence[Stored], int]], part: S, pseudonym_key: bytes
) -> tuple[Columns, Columns, int]:
    """A slice's rows and quarantine candidates as columns, and its line count (a worker's
    task: a column pickles as one tuple, where rows would be one each)."""
    stored, lines = read(part)
    rows, rejects = parse_rows(stored, pseudonym_key)
    return columns_of(rows), columns_of(rejects), lines
