"""Bad envelopes are quarantined with a specific reason, never dropped and never billed."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest

from chargeback_pipeline.lib.ingest import drop_duplicates, ingest_hour
from chargeback_pipeline.lib.parse import PARSED_ENVELOPES
from chargeback_pipeline.lib.reference import load_deployments
from chargeback_pipeline.lib.tables import conform
from chargeback_pipeline.store.base import StoredEnvelope
from chargeback_pipeline_tests.conftest import SEEDS

HOUR = "2026-11-27-13:00"


def run(*raws: bytes):
    stored = [StoredEnvelope("raw/x.ndjson", n, raw) for n, raw in enumerate(raws, start=1)]
    return ingest_hour(stored, HOUR, load_deployments(Path(SEEDS) / "deployments.csv"), b"k")


def mutated(example, change) -> bytes:
    envelope = example("chat_completion")
    change(envelope)
    return orjson.dumps(envelope)


def set_usage(envelope, **counts):
    body = orjson.loads(envelope["response"]["body"])
    body["usage"].update(counts)
    envelope["response"]["body"] = orjson.dumps(body).decode()


CASES = {
    "unknown_schema_major": lambda e: e.update(schema_version="2.0"),
    "wrong_type": lambda e: e.update(elapsed_ms="912"),
    "missing_section": lambda e: e.pop("response"),
    "missing_field": lambda e: e.pop("request_id"),
    "bad_timestamp": lambda e: e.update(timestamp="yesterday"),
    "negative_tokens": lambda e: set_usage(e, prompt_tokens=-5, prompt_tokens_details={}),
    "absurd_tokens": lambda e: set_usage(e, completion_tokens=10**12),
    "outside_partition_hour": lambda e: e.update(timestamp="2026-11-27T15:00:00Z"),
    "cached_exceeds_prompt": lambda e: set_usage(e, prompt_tokens=10),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_bad_envelope_is_quarantined_with_its_reason(example, code):
    outcome = run(mutated(example, CASES[code]))
    assert outcome.usage_events.is_empty()
    assert outcome.quarantined.height == 1
    row = outcome.quarantined.row(0, named=True)
    assert code in row["reason"]
    assert (row["source"], row["source_line"], row["hour"]) == ("raw/x.ndjson", 1, HOUR)


def test_every_envelope_is_accounted_for(example):
    good = orjson.dumps(example("chat_completion"))
    outcome = run(good, good, b"{broken", mutated(example, CASES["wrong_type"]))
    assert outcome.envelopes_read == 4
    assert outcome.usage_events.height == 1
    assert outcome.duplicates_dropped == 1
    assert outcome.quarantined.height == 2


def test_quarantine_reasons_never_echo_body_text(example):
    def poison(envelope):
        envelope["response"]["body"] = '{"usage": {"prompt_tokens": "SECRET PROMPT TEXT"}}'

    outcome = run(mutated(example, poison))
    assert "SECRET" not in outcome.quarantined["reason"][0]


def test_deployment_fills_model_and_type_when_the_response_names_none(example):
    outcome = run(orjson.dumps(example("throttled_429")))
    row = outcome.usage_events.row(0, named=True)
    assert (row["model"], row["deployment_type"], row["billing"]) == (
        "gpt-4o-2024-08-06",
        "GlobalStandard",
        "paygo",
    )


def test_redeliveries_among_single_calls_keep_the_first_delivery():
    rows = pl.DataFrame(
        {
            "request_id": ["b", "a", "c", "a", "c", "d", "c"],
            "source": ["s1", "s2", "s2", "s1", "s1", "s1", "s3"],
            "source_line": [1, 1, 2, 2, 3, 4, 1],
            "elapsed_ms": [5, 7, 9, 7, 8, 1, 9],
        }
    )
    parsed = rows.with_columns(
        pl.lit(None, dtype).alias(name)
        for name, dtype in PARSED_ENVELOPES.items()
        if name not in rows
    )
    winners, conflicts, dropped = drop_duplicates(conform(parsed, PARSED_ENVELOPES))
    kept = winners.sort("request_id").select("request_id", "source", "source_line").rows()
    # a: identical twice (one dropped); c: s1 line 3 wins, s2 and s3 (same as s2) conflict once.
    assert kept == [("a", "s1", 2), ("b", "s1", 1), ("c", "s1", 3), ("d", "s1", 4)]
    assert conflicts.select("request_id", "source", "source_line").rows() == [("c", "s2", 2)]
    assert conflicts["reason"][0] == "conflicting_duplicate: same request_id as a delivery in s1"
    assert dropped == 2
