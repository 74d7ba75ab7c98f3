"""Parse stored envelopes into content-free rows, on every core for large hours.

Kept free of pandera and Dagster so worker processes start quickly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Protocol

import polars as pl

from chargeback_pipeline.lib.envelopes import EnvelopeError, decode_envelope, envelope_row
from chargeback_pipeline.lib.tables import QUARANTINED_ENVELOPES, USAGE_EVENTS

_DERIVED_LATER = ("hour", "deployment_type", "billing")
PARSED_ENVELOPES: dict[str, pl.DataType] = {
    **{k: v for k, v in USAGE_EVENTS.items() if k not in _DERIVED_LATER},
    "source_line": pl.Int64(),
}
QUARANTINE_CANDIDATES = {k: v for k, v in QUARANTINED_ENVELOPES.items() if k != "detected_at"}
REJECTED = {k: v for k, v in QUARANTINE_CANDIDATES.items() if k != "hour"}
CHUNK_BYTES = 16 * 1024 * 1024


class Stored(Protocol):
    """One stored envelope: its object, 1-based line and raw bytes (store.base.StoredEnvelope)."""

    source: str
    line: int
    raw: bytes


def parse_envelopes(
    stored: Iterable[Stored], pseudonym_key: bytes
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse each envelope into a content-free row, or a quarantine candidate with its reason."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for item in stored:
        request_id = None
        try:
            envelope = decode_envelope(item.raw)
            request_id = envelope.get("request_id")
            rows.append(envelope_row(envelope, item.source, item.line, pseudonym_key))
        except EnvelopeError as error:
            rejects.append(
                {
                    "source": item.source,
                    "source_line": item.line,
                    "request_id": request_id if isinstance(request_id, str) else None,
                    "reason": str(error),
                }
            )
    return pl.DataFrame(rows, schema=PARSED_ENVELOPES), pl.DataFrame(rejects, schema=REJECTED)


def chunks_by_size(stored: Iterable[Stored], limit: int = CHUNK_BYTES) -> Iterator[list[Stored]]:
    """Consecutive envelopes grouped into lists of about `limit` bytes."""
    chunk: list[Stored] = []
    size = 0
    for item in stored:
        chunk.append(item)
        size += len(item.raw)
        if size >= limit:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def parse_hour(
    stored: Iterable[Stored],
    pseudonym_key: bytes,
    workers: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse an hour in chunks; past the first chunk, `workers` processes share the work.

    At most two chunks per worker are in flight, so memory stays flat however large the hour.
    """
    chunks = chunks_by_size(stored, chunk_bytes)
    first = next(chunks, None)
    if first is None:
        return pl.DataFrame(schema=PARSED_ENVELOPES), pl.DataFrame(schema=REJECTED)
    second = next(chunks, None)
    if second is None or workers <= 1:
        parsed = [parse_envelopes(chunk, pseudonym_key) for chunk in _chain(first, second, chunks)]
    else:
        parsed = _parse_in_pool(_chain(first, second, chunks), pseudonym_key, workers)
    return (
        pl.concat([rows for rows, _ in parsed], rechunk=True),
        pl.concat([rejects for _, rejects in parsed], rechunk=True),
    )


def _chain(
    first: list[Stored], second: list[Stored] | None, rest: Iterator[list[Stored]]
) -> Iterator[list[Stored]]:
    yield first
    if second is not None:
        yield second
        yield from rest


def _parse_in_pool(
    chunks: Iterator[list[Stored]], pseudonym_key: bytes, workers: int
) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    # spawn, not fork: the caller may be a threaded Dagster run process.
    results: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    pending: list[Future[tuple[pl.DataFrame, pl.DataFrame]]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for chunk in chunks:
            pending.append(pool.submit(parse_envelopes, chunk, pseudonym_key))
            if len(pending) >= 2 * workers:
                results.append(pending.pop(0).result())
        results.extend(future.result() for future in pending)
    return results
