"""Acceptance property: what is billed does not depend on how envelopes were delivered.

For any subset of an hour's calls, the billed request ids, total tokens and total cost (exact
Decimal) are the same however the envelopes arrive: in any order, any of them delivered more than
once, spread over several store objects. A conflicting redelivery (same request_id, other content)
never adds a billed row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

import orjson
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback_pipeline.lib.costs import usage_costs
from chargeback_pipeline.lib.demo_traffic import generate_hour
from chargeback_pipeline.lib.ingest import HourIngest, ingest_hour
from chargeback_pipeline.lib.reference import ReferenceData, load_reference
from chargeback_pipeline.store.base import StoredEnvelope, hour_prefix, split_object
from chargeback_pipeline_tests.conftest import SEEDS

HOUR = "2026-11-27-13:00"
HOUR_START = datetime(2026, 11, 27, 13, tzinfo=UTC)
KEY = b"property-key"
POOL_SIZE = 40

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def pool() -> tuple[bytes, ...]:
    """One hour of generated calls (every operation kind), serialised once."""
    return tuple(orjson.dumps(e) for e in generate_hour(HOUR_START, seed=23, calls=POOL_SIZE))


@cache
def reference() -> ReferenceData:
    return load_reference(SEEDS)


@dataclass(frozen=True)
class Billed:
    """What an hour bills: the ids, the tokens and the exact cost."""

    request_ids: frozenset[str]
    total_tokens: int
    total_cost: Decimal
    events: pl.DataFrame
    costs: pl.DataFrame


def objects_of(lines: list[bytes], parts: int) -> list[StoredEnvelope]:
    """Lines spread over `parts` NDJSON objects of the hour, read back as the store reads them."""
    size = -(-len(lines) // parts) if lines else 0
    stored: list[StoredEnvelope] = []
    for part in range(parts):
        chunk = lines[part * size : (part + 1) * size]
        if chunk:
            name = f"{hour_prefix(HOUR)}20261127T13{part:02d}-writer-{part}.ndjson"
            stored.extend(split_object(name, b"\n".join(chunk) + b"\n"))
    return stored


def ingest(stored: list[StoredEnvelope]) -> HourIngest:
    return ingest_hour(stored, HOUR, reference().deployments, KEY)


def billed(outcome: HourIngest) -> Billed:
    costs = usage_costs(outcome.usage_events, reference())
    cost = sum((v for v in costs["total_cost"].to_list() if v is not None), Decimal(0))
    # `source` names the object the kept delivery came from: it moves with the delivery.
    return Billed(
        request_ids=frozenset(outcome.usage_events["request_id"].to_list()),
        total_tokens=int(outcome.usage_events["total_tokens"].sum()),
        total_cost=cost,
        events=outcome.usage_events.drop("source").sort("request_id"),
        costs=costs.drop("source").sort("request_id"),
    )


def assert_reconciled(outcome: HourIngest) -> None:
    accounted = (
        outcome.usage_events.height + outcome.quarantined.height + outcome.duplicates_dropped
    )
    assert accounted == outcome.envelopes_read


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    """A subset of the pool, then a delivery of it: shuffled, with redeliveries, in parts."""
    chosen = draw(
        st.lists(st.integers(0, POOL_SIZE - 1), min_size=1, max_size=POOL_SIZE, unique=True)
    )
    repeats = draw(st.lists(st.sampled_from(chosen), max_size=2 * len(chosen)))
    order = draw(st.randoms(use_true_random=False))
    delivered = chosen + repeats
    order.shuffle(delivered)
    parts = draw(st.integers(1, 4))
    return sorted(chosen), delivered, parts


def test_the_pool_is_all_billable_and_priced():
    outcome = ingest(objects_of(list(pool()), 1))
    assert outcome.quarantined.is_empty()
    result = billed(outcome)
    assert len(result.request_ids) == POOL_SIZE
    assert result.total_tokens > 0 and result.total_cost > 0
    assert set(result.events["operation"]) >= {"chat_completions", "embeddings", "responses"}


@PROPERTY
@given(deliveries())
def test_order_redelivery_and_splitting_never_change_what_is_billed(delivery):
    chosen, delivered, parts = delivery
    raws = pool()
    once = ingest(objects_of([raws[i] for i in chosen], 1))
    expected = billed(once)
    outcome = ingest(objects_of([raws[i] for i in delivered], parts))
    got = billed(outcome)

    assert got.request_ids == expected.request_ids
    assert len(got.request_ids) == len(chosen)
    assert got.total_tokens == expected.total_tokens
    assert got.total_cost == expected.total_cost
    assert got.events.equals(expected.events)
    assert got.costs.equals(expected.costs)
    assert outcome.quarantined.is_empty()
    assert outcome.duplicates_dropped == len(delivered) - len(chosen)
    assert_reconciled(outcome)


@PROPERTY
@given(deliveries(), st.lists(st.integers(0, 10_000), min_size=1, max_size=3))
def test_an_hour_read_in_runs_bills_like_one_read(delivery, cuts):
    """Uneven batches written by several runs (writers, minutes) of one hour, read together."""
    chosen, delivered, _ = delivery
    raws = pool()
    expected = billed(ingest(objects_of([raws[i] for i in chosen], 1)))
    bounds = [0, *sorted(cut % (len(delivered) + 1) for cut in cuts), len(delivered)]
    stored: list[StoredEnvelope] = []
    for run, (start, end) in enumerate(itertools.pairwise(bounds)):
        name = f"{hour_prefix(HOUR)}20261127T13{run:02d}-run-{run}.ndjson"
        lines = [raws[i] for i in delivered[start:end]]
        if lines:
            stored.extend(split_object(name, b"\n".join(lines)))
    got = billed(ingest(stored))
    assert (got.request_ids, got.total_tokens, got.total_cost) == (
        expected.request_ids,
        expected.total_tokens,
        expected.total_cost,
    )


def conflicting(raw: bytes, change: int) -> bytes:
    """The same call (request_id) delivered with other content."""
    envelope = orjson.loads(raw)
    if change == 0:
        envelope["elapsed_ms"] = (envelope.get("elapsed_ms") or 0) + 1
    elif change == 1:
        envelope["gateway_tokens"] = {"prompt": 1, "completion": 1, "total": 2, "estimated": True}
        envelope["response"]["body"] = None
    elif change == 2:
        envelope["tags"] = {**(envelope.get("tags") or {}), "project": "other"}
    else:
        envelope["response"]["status"] = 500
    return orjson.dumps(envelope)


@PROPERTY
@given(
    deliveries(),
    st.lists(st.tuples(st.integers(0, POOL_SIZE - 1), st.integers(0, 3)), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_a_conflicting_redelivery_never_changes_the_count_of_billed_rows(
    delivery, conflicts, order
):
    chosen, delivered, parts = delivery
    raws = pool()
    expected = billed(ingest(objects_of([raws[i] for i in chosen], 1)))
    extra = [conflicting(raws[chosen[i % len(chosen)]], change) for i, change in conflicts]
    lines = [raws[i] for i in delivered] + extra
    order.shuffle(lines)
    outcome = ingest(objects_of(lines, parts))
    got = billed(outcome)

    assert got.events.height == len(chosen)
    assert got.request_ids == expected.request_ids
    reasons = outcome.quarantined["reason"].to_list()
    assert all(reason.startswith("conflicting_duplicate") for reason in reasons)
    assert set(outcome.quarantined["request_id"]) <= expected.request_ids
    assert_reconciled(outcome)
