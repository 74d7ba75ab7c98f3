"""One hour of a lake table summed for operators: tokens, cost per currency, quarantine reasons.

Sums are taken over a *rollup*: the hour's rows summed per model, source, cost center, currency
and pricing. A rollup is tiny, and the rollup of an hour is the sum of its parts' rollups, so an
hour streamed in batches is summed without holding it. Everything here is ids and numbers:
previews name cost centers, models, token sources and reason codes, never a body or a user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import NamedTuple

import polars as pl

TOKEN_COLUMNS = {
    "prompt_tokens": "tokens_prompt",
    "cached_tokens": "tokens_cached",
    "completion_tokens": "tokens_completion",
    "total_tokens": "tokens_total",
}
"""Table column -> metadata name of its hourly sum."""

REASON_CODE = pl.col("reason").str.extract(r"^([a-z_]+)").fill_null("unknown").alias("reason")
"""Only the stable code before the first `:`; the rest of a reason may name a field or a path."""

NONE_CELL = "(none)"
PREVIEW_ROWS = 5
ROLLUP_KEYS = ("model", "deployment_type", "token_source", "cost_center", "currency", "priced")
ROLLUP_SUMS = (*TOKEN_COLUMNS, "images", "total_cost")
FAILURE_CASE_COLUMNS = ("column", "check", "failure_case")


def rollup(frame: pl.DataFrame) -> pl.DataFrame:
    """Requests and sums per rollup key present in `frame` (usage_events or usage_costs rows)."""
    keys = [key for key in ROLLUP_KEYS if key in frame.columns]
    sums = [column for column in ROLLUP_SUMS if column in frame.columns]
    # Counts priced rows, so an all-unpriced group shows no cost rather than a zero one.
    costed = [pl.col("total_cost").count().alias("costed")] if "total_cost" in sums else []
    counted = [pl.col(column) > 0 for column in ("total_tokens", "images") if column in sums]
    billable = pl.any_horizontal(counted).fill_null(False) if counted else pl.lit(False)
    return frame.group_by(*keys, billable.alias("billable")).agg(
        pl.len().cast(pl.Int64).alias("requests"), *(pl.col(c).sum() for c in sums), *costed
    )


def combine_rollups(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The rollup of a whole hour from the rollups of its parts (at least one part)."""
    keys = [key for key in (*ROLLUP_KEYS, "billable") if key in parts[0].columns]
    return pl.concat(parts).group_by(keys).agg(pl.exclude(keys).sum())


class FrameTally(NamedTuple):
    """What one frame adds to an hour's tally."""

    rollup: pl.DataFrame
    failures: pl.DataFrame


class HourTally:
    """The rollup and the output-check failures of an hour that passes by in frames."""

    def __init__(self, check: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        self._check = check
        self._rollups: list[pl.DataFrame] = []
        self._failures: list[pl.DataFrame] = []

    def measure(self, frame: pl.DataFrame) -> FrameTally:
        """One frame's rollup and failures, not yet counted (safe to call from any thread)."""
        return FrameTally(rollup(frame), self._check(frame))

    def record(self, measured: FrameTally) -> None:
        """Count a frame measured earlier."""
        self._rollups.append(measured.rollup)
        self._failures.append(measured.failures)

    def add(self, frame: pl.DataFrame) -> None:
        """Count one frame of the hour."""
        self.record(self.measure(frame))

    def observe(self, frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """Pass frames through, counting each."""
        for frame in frames:
            self.add(frame)
            yield frame

    def summary(self, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """The hour's rollup (of an empty `schema` frame when nothing passed)."""
        return combine_rollups([rollup(pl.DataFrame(schema=schema)), *self._rollups])

    def failures(self) -> pl.DataFrame:
        """Every failure case of the check, across frames."""
        if not self._failures:
            return pl.DataFrame(schema=dict.fromkeys(FAILURE_CASE_COLUMNS, pl.String))
        return pl.concat(self._failures, how="vertical_relaxed")


def token_totals(summary: pl.DataFrame) -> dict[str, int]:
    """The hour's prompt, cached, completion and total tokens (0 for an empty hour)."""
    sums = summary.select(pl.col(list(TOKEN_COLUMNS)).sum()).row(0, named=True)
    return {TOKEN_COLUMNS[name]: int(value or 0) for name, value in sums.items()}


def cost_by_currency(summary: pl.DataFrame) -> dict[str, Decimal]:
    """The hour's exact priced cost per currency; unpriced rows have no currency and no cost."""
    grouped = (
        summary.filter(pl.col("currency").is_not_null())
        .group_by("currency")
        .agg(pl.col("total_cost").sum())
        .sort("currency")
    )
    return {currency: Decimal(total) for currency, total in grouped.iter_rows()}


def reason_counts(quarantined: pl.DataFrame) -> dict[str, int]:
    """Quarantined envelopes per reason code, codes sorted."""
    counts = quarantined.group_by(REASON_CODE).len().sort("reason")
    return {reason: int(count) for reason, count in counts.iter_rows()}


def top_by_cost(summary: pl.DataFrame, key: str, limit: int = PREVIEW_ROWS) -> pl.DataFrame:
    """Requests, tokens and exact cost per `key` and currency, most expensive first."""
    return (
        summary.group_by(key, "currency")
        .agg(
            pl.col("requests").sum(),
            pl.col("total_tokens").sum().alias("tokens"),
            # Unpriced rows group under no currency: their cost is unknown, not zero.
            pl.when(pl.col("costed").sum() > 0).then(pl.col("total_cost").sum()).alias("cost"),
        )
        .sort(["cost", "tokens", key], descending=[True, True, False], nulls_last=True)
        .head(limit)
        .select(key, "requests", "tokens", "cost", "currency")
    )


def top_by_tokens(summary: pl.DataFrame, key: str, limit: int = PREVIEW_ROWS) -> pl.DataFrame:
    """Requests and tokens per `key`, most tokens first."""
    return (
        summary.group_by(key)
        .agg(pl.col("requests").sum(), pl.col(list(TOKEN_COLUMNS)).sum())
        .sort(["total_tokens", key], descending=[True, False], nulls_last=True)
        .head(limit)
    )


def markdown_cell(value: object) -> str:
    """A table cell: exact decimals in fixed notation, pipes and line breaks neutralised."""
    if value is None:
        return NONE_CELL
    text = f"{value:f}" if isinstance(value, Decimal) else str(value)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(frame: pl.DataFrame) -> str:
    """A small frame as a markdown table (callers pass ids and numbers only)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def _sections(hour: str, tables: dict[str, pl.DataFrame]) -> str:
    parts = [f"**{hour}**"]
    for title, frame in tables.items():
        parts += [f"**{title}**", markdown_table(frame) if frame.height else "_no rows_"]
    return "\n\n".join(parts)


def events_preview(summary: pl.DataFrame, hour: str) -> str:
    """Markdown: the hour's top models by tokens and its tokens per source."""
    return _sections(
        hour,
        {
            "Top models by tokens": top_by_tokens(summary, "model"),
            "Tokens by source": top_by_tokens(summary, "token_source", limit=10),
        },
    )


def costs_preview(summary: pl.DataFrame, hour: str) -> str:
    """Markdown: the hour's top cost centers and models by exact cost."""
    return _sections(
        hour,
        {
            "Top cost centers": top_by_cost(summary, "cost_center"),
            "Top models": top_by_cost(summary, "model"),
        },
    )


def quarantine_preview(quarantined: pl.DataFrame, hour: str) -> str:
    """Markdown: the hour's quarantined envelopes per reason code."""
    counts = pl.DataFrame(
        list(reason_counts(quarantined).items()), schema=["reason", "envelopes"], orient="row"
    )
    return _sections(hour, {"Quarantined by reason": counts})
