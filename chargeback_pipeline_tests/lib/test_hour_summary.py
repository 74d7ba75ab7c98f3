"""Hour summaries: exact sums, reason codes only, small previews of ids and numbers."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from chargeback_pipeline.lib import tables
from chargeback_pipeline.lib.checks import estimated_share, unallocated_share, unpriced_usage
from chargeback_pipeline.lib.hour_summary import (
    HourTally,
    combine_rollups,
    cost_by_currency,
    costs_preview,
    events_preview,
    markdown_cell,
    markdown_table,
    quarantine_preview,
    reason_counts,
    rollup,
    token_totals,
    top_by_cost,
)

HOUR = "2026-11-27-13:00"
TOKENS = ("prompt_tokens", "cached_tokens", "completion_tokens", "total_tokens")
COST_SCHEMA = {
    "request_id": pl.String(),
    "user_hash": pl.String(),
    "cost_center": pl.String(),
    "model": pl.String(),
    "token_source": pl.String(),
    "prompt_tokens": pl.Int64(),
    "cached_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "total_cost": tables.MONEY,
    "currency": pl.String(),
}


def costs(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=COST_SCHEMA, orient="row")


SAMPLE = costs(
    ("r1", "u1", "CC-1", "gpt-4o", "reported", 100, 40, 10, 110, Decimal("0.000700000001"), "USD"),
    ("r2", "u2", "CC-1", "gpt-4o", "reported", 5, 0, 5, 10, Decimal("0.000100000000"), "USD"),
    ("r3", "u3", "CC-2", "o4-mini", "estimated", 7, 0, 3, 10, Decimal("2.5"), "EUR"),
    ("r4", "u4", "UNALLOCATED", "unknown-model", "gateway", 9, 1, 1, 10, None, None),
)


def test_token_totals_are_exact_integer_sums():
    assert token_totals(rollup(SAMPLE)) == {
        "tokens_prompt": 121,
        "tokens_cached": 41,
        "tokens_completion": 19,
        "tokens_total": 140,
    }


def test_token_totals_of_an_empty_hour_are_zero():
    assert set(token_totals(rollup(SAMPLE.head(0))).values()) == {0}


def test_cost_is_exact_per_currency_and_unpriced_rows_add_nothing():
    totals = cost_by_currency(rollup(SAMPLE))
    assert totals == {"EUR": Decimal("2.5"), "USD": Decimal("0.000800000001")}
    assert f"{totals['USD']:f}" == "0.000800000001"
    assert cost_by_currency(rollup(SAMPLE.head(0))) == {}


def test_reason_counts_keep_only_the_stable_code():
    quarantined = pl.DataFrame(
        {
            "reason": [
                "wrong_type: elapsed_ms",
                "wrong_type: status",
                "unknown_schema_major: 2.0",
                "Not a code at all",
            ]
        }
    )
    assert reason_counts(quarantined) == {
        "unknown": 1,
        "unknown_schema_major": 1,
        "wrong_type": 2,
    }
    preview = quarantine_preview(quarantined, HOUR)
    assert "| wrong_type | 2 |" in preview
    assert "elapsed_ms" not in preview and "Not a code" not in preview


def test_top_by_cost_ranks_by_exact_cost_and_keeps_unpriced_last():
    top = top_by_cost(rollup(SAMPLE), "cost_center", limit=3)
    assert top["cost_center"].to_list() == ["CC-2", "CC-1", "UNALLOCATED"]
    assert top.row(1) == ("CC-1", 2, 120, Decimal("0.000800000001"), "USD")
    assert top_by_cost(rollup(SAMPLE), "model", limit=1).height == 1


def test_previews_name_ids_and_numbers_never_requests_or_users():
    cost_text = costs_preview(rollup(SAMPLE), HOUR)
    assert "| CC-1 | 2 | 120 | 0.000800000001 | USD |" in cost_text
    assert "| unknown-model | 1 | 10 | (none) | (none) |" in cost_text
    event_text = events_preview(rollup(SAMPLE), HOUR)
    assert "| estimated | 1 | 7 | 0 | 3 | 10 |" in event_text
    for text in (cost_text, event_text):
        assert HOUR in text
        assert not any(value in text for value in ("r1", "r2", "u1", "u2"))


def test_markdown_cells_cannot_break_the_table():
    assert markdown_cell("a|b\nc") == "a\\|b c"
    assert markdown_cell(Decimal("0E-12")) == "0.000000000000"
    assert markdown_cell(None) == "(none)"
    table = markdown_table(pl.DataFrame({"id": ["x|y"], "n": [1]}))
    assert table.splitlines() == ["| id | n |", "|---|---|", "| x\\|y | 1 |"]


def test_an_empty_hour_previews_as_no_rows():
    assert costs_preview(rollup(SAMPLE.head(0)), HOUR).count("_no rows_") == 2


def test_the_rollup_of_parts_sums_to_the_rollup_of_the_whole():
    whole = rollup(SAMPLE)
    parts = combine_rollups([rollup(SAMPLE.slice(i, 1)) for i in range(SAMPLE.height)])
    keys = [c for c in whole.columns if c not in ("requests", "costed", *TOKENS, "total_cost")]
    assert parts.sort(keys, nulls_last=True).equals(whole.sort(keys, nulls_last=True))
    assert rollup(SAMPLE.head(3)).height == 2  # r1 and r2 share every key
    assert cost_by_currency(parts) == cost_by_currency(whole)


def test_quality_measures_read_the_rollup_like_the_rows():
    rows = SAMPLE.with_columns(
        priced=pl.col("currency").is_not_null(),
        images=pl.lit(0, pl.Int64),
        deployment_type=pl.lit("GlobalStandard"),
    )
    summary = rollup(rows)
    assert unpriced_usage(summary).row(0) == ("unknown-model", "GlobalStandard", 1, 10)
    assert unallocated_share(summary) == 0  # the UNALLOCATED row has no price
    assert estimated_share(summary) == 10 / 140


def test_a_tally_sums_and_checks_every_frame_that_passes():
    seen = HourTally(
        lambda frame: frame.filter(pl.col("total_tokens") > 100).select(
            pl.lit("total_tokens").alias("column"),
            pl.lit("at_most_100").alias("check"),
            pl.col("request_id").alias("failure_case"),
        )
    )
    passed = list(seen.observe(SAMPLE.slice(i, 2) for i in range(0, SAMPLE.height, 2)))
    assert pl.concat(passed).equals(SAMPLE)
    assert token_totals(seen.summary(COST_SCHEMA)) == token_totals(rollup(SAMPLE))
    assert seen.failures()["failure_case"].to_list() == ["r1"]
    empty = HourTally(lambda frame: frame)
    assert token_totals(empty.summary(COST_SCHEMA))["tokens_total"] == 0
    assert empty.failures().is_empty()
