"""One hour of a lake table summed for operators: tokens, cost per currency, quarantine reasons.

Everything here is ids and numbers: previews name cost centers, models, token sources and reason
codes, never a body, a tag value as sent, or a user.
"""

from __future__ import annotations

from decimal import Decimal

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


def token_totals(frame: pl.DataFrame) -> dict[str, int]:
    """The hour's prompt, cached, completion and total tokens (0 for an empty hour)."""
    sums = frame.select(pl.col(list(TOKEN_COLUMNS)).sum()).row(0, named=True)
    return {TOKEN_COLUMNS[name]: int(value or 0) for name, value in sums.items()}


def cost_by_currency(costs: pl.DataFrame) -> dict[str, Decimal]:
    """The hour's exact priced cost per currency; unpriced rows have no currency and no cost."""
    grouped = (
        costs.filter(pl.col("currency").is_not_null())
        .group_by("currency")
        .agg(pl.col("total_cost").sum())
        .sort("currency")
    )
    return {currency: Decimal(total) for currency, total in grouped.iter_rows()}


def reason_counts(quarantined: pl.DataFrame) -> dict[str, int]:
    """Quarantined envelopes per reason code, codes sorted."""
    counts = quarantined.group_by(REASON_CODE).len().sort("reason")
    return {reason: int(count) for reason, count in counts.iter_rows()}


def top_by_cost(costs: pl.DataFrame, key: str, limit: int = PREVIEW_ROWS) -> pl.DataFrame:
    """Requests, tokens and exact cost per `key` and currency, most expensive first."""
    return (
        costs.group_by(key, "currency")
        .agg(
            pl.len().alias("requests"),
            pl.col("total_tokens").sum().alias("tokens"),
            # Unpriced rows group under no currency: their cost is unknown, not zero.
            pl.when(pl.col("total_cost").count() > 0)
            .then(pl.col("total_cost").sum())
            .alias("cost"),
        )
        .sort(["cost", "tokens", key], descending=[True, True, False], nulls_last=True)
        .head(limit)
        .select(key, "requests", "tokens", "cost", "currency")
    )


def top_by_tokens(events: pl.DataFrame, key: str, limit: int = PREVIEW_ROWS) -> pl.DataFrame:
    """Requests and tokens per `key`, most tokens first."""
    return (
        events.group_by(key)
        .agg(pl.len().alias("requests"), pl.col(list(TOKEN_COLUMNS)).sum())
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


def events_preview(events: pl.DataFrame, hour: str) -> str:
    """Markdown: the hour's top models by tokens and its tokens per source."""
    return _sections(
        hour,
        {
            "Top models by tokens": top_by_tokens(events, "model"),
            "Tokens by source": top_by_tokens(events, "token_source", limit=10),
        },
    )


def costs_preview(costs: pl.DataFrame, hour: str) -> str:
    """Markdown: the hour's top cost centers and models by exact cost."""
    return _sections(
        hour,
        {
            "Top cost centers": top_by_cost(costs, "cost_center"),
            "Top models": top_by_cost(costs, "model"),
        },
    )


def quarantine_preview(quarantined: pl.DataFrame, hour: str) -> str:
    """Markdown: the hour's quarantined envelopes per reason code."""
    counts = pl.DataFrame(
        list(reason_counts(quarantined).items()), schema=["reason", "envelopes"], orient="row"
    )
    return _sections(hour, {"Quarantined by reason": counts})
