"""Pricing and allocation match a hand computation, across a price change and a month boundary."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from chargeback_pipeline.lib.costs import usage_costs
from chargeback_pipeline.lib.reference import load_reference
from chargeback_pipeline.lib.tables import USAGE_EVENTS, conform

HEADER = (
    "model,deployment_type,unit,effective_from,effective_to,"
    "input_per_1m,cached_input_per_1m,output_per_1m,per_unit,currency"
)
PRICE_BOOK = (
    HEADER
    + """
gpt-4o-2024-08-06,GlobalStandard,token,2024-08-06,2026-11-01,5.00,2.50,15.00,,USD
gpt-4o-2024-08-06,GlobalStandard,token,2026-11-01,,2.50,1.25,10.00,,USD
gpt-35-turbo-instruct-0914,Standard,token,2023-09-14,,1.50,,2.00,,USD
dall-e-3,Standard,image,2023-11-06,,,,,0.04,USD
"""
)
DEPLOYMENTS = """deployment,backend_id,model,deployment_type,region,billing
gpt-4o,b1,gpt-4o-2024-08-06,GlobalStandard,eastus,paygo
"""
COST_CENTERS = """subscription_id,cost_center,owner,effective_from,effective_to
sub-a,CC-OLD,o,2025-01-01,2026-11-01T00:00:00Z
sub-a,CC-NEW,o,2026-11-01T00:00:00Z,
sub-b,CC-B,o,2025-01-01,
"""


def reference(tmp_path: Path):
    for name, text in (
        ("price_book.csv", PRICE_BOOK),
        ("deployments.csv", DEPLOYMENTS),
        ("cost_centers.csv", COST_CENTERS),
    ):
        (tmp_path / name).write_text(text)
    return load_reference(tmp_path)


def events(*rows: dict) -> pl.DataFrame:
    base = {
        "hour": "x",
        "subscription_id": "sub-a",
        "operation": "chat_completions",
        "prompt_tokens": 0,
        "cached_tokens": 0,
        "completion_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": 0,
        "images": 0,
        "token_source": "reported",
        "model": "gpt-4o-2024-08-06",
        "deployment_type": "GlobalStandard",
        "cost_center": None,
    }
    frame = pl.DataFrame([{**base, **row} for row in rows])
    missing = [pl.lit(None).alias(c) for c in USAGE_EVENTS if c not in frame.columns]
    return conform(frame.with_columns(missing), USAGE_EVENTS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


TOKENS = {"prompt_tokens": 1000, "cached_tokens": 200, "completion_tokens": 500}


def test_costs_match_hand_computation_across_price_change_and_month_boundary(tmp_path):
    costs = usage_costs(
        events(
            {"request_id": "oct", "timestamp": at("2026-10-31T23:59:59.999Z"), **TOKENS},
            {"request_id": "nov", "timestamp": at("2026-11-01T00:00:00Z"), **TOKENS},
        ),
        reference(tmp_path),
    )
    by_id = {row["request_id"]: row for row in costs.iter_rows(named=True)}
    # October price: 800 x 5.00 + 200 x 2.50 + 500 x 15.00 per million.
    assert by_id["oct"]["input_cost"] == Decimal("0.004")
    assert by_id["oct"]["cached_input_cost"] == Decimal("0.0005")
    assert by_id["oct"]["output_cost"] == Decimal("0.0075")
    assert by_id["oct"]["total_cost"] == Decimal("0.012")
    # November price (effective_from is inclusive): 800 x 2.50 + 200 x 1.25 + 500 x 10.00.
    assert by_id["nov"]["total_cost"] == Decimal("0.00725")
    assert by_id["oct"]["price_effective_from"] == at("2024-08-06T00:00:00Z")
    assert by_id["nov"]["price_effective_from"] == at("2026-11-01T00:00:00Z")
    assert costs.schema["total_cost"] == pl.Decimal(38, 12)
    # The subscription mapping changes at the same instant.
    assert (by_id["oct"]["cost_center"], by_id["nov"]["cost_center"]) == ("CC-OLD", "CC-NEW")


def test_one_token_at_the_cheapest_price_is_not_rounded_away(tmp_path):
    costs = usage_costs(
        events(
            {
                "request_id": "tiny",
                "timestamp": at("2026-11-02T00:00:00Z"),
                "prompt_tokens": 1,
                "cached_tokens": 1,
            }
        ),
        reference(tmp_path),
    )
    assert costs["cached_input_cost"][0] == Decimal("0.00000125")


def test_empty_cached_price_charges_cached_tokens_at_the_input_price(tmp_path):
    costs = usage_costs(
        events(
            {
                "request_id": "legacy",
                "timestamp": at("2026-11-02T00:00:00Z"),
                "model": "gpt-35-turbo-instruct-0914",
                "deployment_type": "Standard",
                "prompt_tokens": 1000,
                "cached_tokens": 500,
            }
        ),
        reference(tmp_path),
    )
    assert costs["cached_input_cost"][0] == Decimal("0.00075")
    assert costs["total_cost"][0] == Decimal("0.0015")


def test_images_are_priced_per_image(tmp_path):
    costs = usage_costs(
        events(
            {
                "request_id": "img",
                "timestamp": at("2026-11-02T00:00:00Z"),
                "model": "dall-e-3",
                "deployment_type": "Standard",
                "operation": "image_generations",
                "images": 2,
            }
        ),
        reference(tmp_path),
    )
    assert costs["image_cost"][0] == Decimal("0.08")
    assert costs["total_cost"][0] == Decimal("0.08")
    assert costs["price_unit"][0] == "image"


def test_unknown_model_is_unpriced_never_zero(tmp_path):
    costs = usage_costs(
        events(
            {
                "request_id": "u",
                "timestamp": at("2026-11-02T00:00:00Z"),
                "model": "gpt-9",
                **TOKENS,
            }
        ),
        reference(tmp_path),
    )
    row = costs.row(0, named=True)
    assert row["priced"] is False
    assert row["total_cost"] is None
    assert row["currency"] is None
    assert row["prompt_tokens"] == 1000


def test_allocation_known_tag_then_subscription_then_unallocated(tmp_path):
    when = at("2026-11-02T00:00:00Z")
    costs = usage_costs(
        events(
            {"request_id": "1", "timestamp": when, "cost_center": "CC-B"},
            {"request_id": "2", "timestamp": when, "cost_center": "CC-UNKNOWN"},
            {"request_id": "3", "timestamp": when, "subscription_id": "sub-zzz"},
            {"request_id": "4", "timestamp": at("2024-01-01T00:00:00Z")},
        ),
        reference(tmp_path),
    )
    got = {
        r["request_id"]: (r["cost_center"], r["allocation"]) for r in costs.iter_rows(named=True)
    }
    assert got == {
        "1": ("CC-B", "tag"),
        "2": ("CC-NEW", "subscription"),
        "3": ("UNALLOCATED", "unallocated"),
        "4": ("UNALLOCATED", "unallocated"),
    }
    assert costs.filter(pl.col("request_id") == "2")["cost_center_tag"][0] == "CC-UNKNOWN"


def test_a_call_the_pool_served_from_ptu_is_priced_as_provisioned_not_paygo():
    """Pool members share the deployment name; the backend id decides the deployment type."""
    from chargeback_pipeline.lib.costs import attach_deployments
    from chargeback_pipeline.settings import PROJECT_ROOT

    seeds = load_reference(PROJECT_ROOT / "dbt_like_sql" / "seeds")
    calls = pl.DataFrame(
        {
            "deployment": ["gpt-4o", "gpt-4o", "gpt-4o"],
            "backend_id": ["aoai-eastus-ptu", "aoai-westeurope-1", None],
            "model": [None, None, None],
        },
        schema={"deployment": pl.String, "backend_id": pl.String, "model": pl.String},
    )
    typed = attach_deployments(calls.lazy(), seeds.deployments).collect()
    by_backend = {r["backend_id"]: (r["deployment_type"], r["billing"]) for r in typed.to_dicts()}
    assert by_backend == {
        "aoai-eastus-ptu": ("ProvisionedManaged", "ptu"),
        "aoai-westeurope-1": ("DataZoneStandard", "paygo"),
        None: ("GlobalStandard", "paygo"),  # no backend id: the name's first row
    }
