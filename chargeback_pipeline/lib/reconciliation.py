"""An hour of usage held against Log Analytics: lost envelopes, and LLM-log token upgrades."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

LOST_TOLERANCE_ENV = "CHARGEBACK_LOST_TOLERANCE"
SAMPLE_IDS = 5
LOG_ANALYTICS = "log_analytics"
UPGRADABLE_SOURCES = ("gateway", "estimated")
"""Sources the LLM log's counts replace: APIM's passthrough counts and text-length estimates."""

_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def lost_tolerance(env: Mapping[str, str]) -> float:
    """The share of an hour's gateway calls that may lack an envelope (default 0)."""
    raw = (env.get(LOST_TOLERANCE_ENV) or "0").strip()
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ValueError(f"{LOST_TOLERANCE_ENV}={raw!r} is not a share between 0 and 1")
    return value


def _key(column: str) -> pl.Expr:
    # APIM request ids are GUIDs; Log Analytics and policies may differ in letter case.
    return pl.col(column).str.to_lowercase()


def seen_request_ids(events: pl.DataFrame, quarantined: pl.DataFrame) -> pl.Series:
    """Request ids the pipeline accounted for in an hour: billed or quarantined."""
    ids = pl.concat([events.select("request_id"), quarantined.select("request_id")])
    return ids.select(_key("request_id")).drop_nulls().unique()["request_id"]


@dataclass(frozen=True)
class LostEnvelopes:
    """Gateway calls with no envelope, per subscription (calls, lost, up to 5 sample ids)."""

    per_subscription: pl.DataFrame
    by_response_code: pl.DataFrame
    gateway_calls: int
    lost: int
    tolerance: float

    @property
    def share(self) -> float:
        return self.lost / self.gateway_calls if self.gateway_calls else 0.0

    @property
    def passed(self) -> bool:
        return self.share <= self.tolerance


def lost_envelopes(gateway_calls: pl.DataFrame, seen: pl.Series, tolerance: float) -> LostEnvelopes:
    """Count the gateway calls whose CorrelationId matches no request id the pipeline saw."""
    calls = (
        gateway_calls.filter(pl.col("correlation_id").is_not_null())
        .unique("correlation_id", keep="first", maintain_order=True)
        .with_columns((~_key("correlation_id").is_in(seen.implode())).alias("_lost"))
    )
    per_subscription = (
        calls.group_by("subscription_id")
        .agg(
            pl.len().alias("calls"),
            pl.col("_lost").sum().alias("lost"),
            pl.col("correlation_id").filter("_lost").sort().head(SAMPLE_IDS).alias("sample_ids"),
        )
        .filter(pl.col("lost") > 0)
        .sort(["lost", "subscription_id"], descending=[True, False], nulls_last=True)
    )
    by_code = (
        calls.filter("_lost")
        .group_by("response_code")
        .agg(pl.len().alias("lost"))
        .sort("response_code", nulls_last=True)
    )
    return LostEnvelopes(
        per_subscription=per_subscription,
        by_response_code=by_code,
        gateway_calls=calls.height,
        lost=int(calls["_lost"].sum()),
        tolerance=tolerance,
    )


@dataclass(frozen=True)
class TokenUpgrade:
    """usage_events with LLM-log counts applied; counts of rows carrying them, changed by this
    pass, and still on gateway or estimated numbers; the change in total tokens."""

    events: pl.DataFrame
    upgraded: int
    changed: int
    not_upgraded: int
    token_delta: int


def _llm_counts(llm_usage: pl.DataFrame) -> pl.DataFrame:
    """One usable row per call: non-negative prompt and completion counts, total filled in."""
    usable = pl.col("prompt_tokens").is_not_null() & pl.col("completion_tokens").is_not_null()
    non_negative = (pl.col("prompt_tokens") >= 0) & (pl.col("completion_tokens") >= 0)
    return (
        llm_usage.filter(pl.col("correlation_id").is_not_null() & usable & non_negative)
        .select(
            _key("correlation_id").alias("_key"),
            pl.col("prompt_tokens").alias("_prompt"),
            pl.col("completion_tokens").alias("_completion"),
            pl.when(pl.col("total_tokens") >= 0)
            .then(pl.col("total_tokens"))
            .otherwise(pl.col("prompt_tokens") + pl.col("completion_tokens"))
            .alias("_total"),
        )
        .sort(pl.all())
        .unique("_key", keep="first", maintain_order=True)
    )


def upgrade_tokens(events: pl.DataFrame, llm_usage: pl.DataFrame) -> TokenUpgrade:
    """Gateway or estimated counts replaced by the LLM log's, marked `log_analytics`.

    Idempotent: rows already marked are re-applied identically, or kept when the log lacks them.
    """
    compared = (*_TOKENS, "token_source")
    joined = events.with_columns(
        _key("request_id").alias("_key"), *[pl.col(c).alias(f"_was_{c}") for c in compared]
    ).join(_llm_counts(llm_usage), on="_key", how="left", maintain_order="left")
    source = pl.col("token_source")
    applies = source.is_in([*UPGRADABLE_SOURCES, LOG_ANALYTICS]) & pl.col("_prompt").is_not_null()
    new = {"prompt_tokens": "_prompt", "completion_tokens": "_completion", "total_tokens": "_total"}
    upgraded = joined.with_columns(
        *[pl.when(applies).then(pl.col(new[c])).otherwise(pl.col(c)).alias(c) for c in new],
        pl.when(applies).then(pl.lit(LOG_ANALYTICS)).otherwise(source).alias("token_source"),
        applies.alias("_applies"),
    )
    changed = upgraded.filter(
        pl.any_horizontal(*[pl.col(c).ne_missing(pl.col(f"_was_{c}")) for c in compared])
    )
    return TokenUpgrade(
        events=upgraded.select(events.columns),
        upgraded=int(upgraded["_applies"].sum()),
        changed=changed.height,
        not_upgraded=upgraded.filter(source.is_in(UPGRADABLE_SOURCES)).height,
        token_delta=int(
            changed.select(pl.col("total_tokens").sum() - pl.sum("_was_total_tokens")).item()
        ),
    )
