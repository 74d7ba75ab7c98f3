"""End to end: official SDK -> gateway -> simulator; envelopes -> store -> hourly assets.

The tokens billed in `usage_events` must be the ones the SDK itself received, from the body in
buffered mode ('reported') and from the gateway's counts for passthrough streams ('gateway').
Servers run in threads: every call finishes before the materialisation starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import polars as pl
import pytest

from chargeback_pipeline.cli import materialize_hours
from chargeback_pipeline.gateway.tokens import count_words, prompt_tokens
from chargeback_pipeline.lib.envelopes import pseudonymise
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline_tests.gateway.conftest import (
    CALL_HOUR,
    KEY,
    hour_key,
    sdk,
    unsigned_jwt,
    wait_for_stored,
)

MARKER = "Quokkaparade"
"""A word in every prompt: it must reach no table."""
USER_OID = "user-oid-7"
TABLES = ("usage_events", "usage_costs", "quarantined_envelopes")


@dataclass(frozen=True)
class Expected:
    """What one call's usage_events row must say."""

    operation: str
    prompt: int
    completion: int
    total: int
    token_source: str
    cached: int = 0
    reasoning: int = 0
    streamed: bool = False
    images: int = 0
    status: int = 200


def from_chat_usage(usage: Any, source: str, streamed: bool, operation: str) -> Expected:
    details = getattr(usage, "prompt_tokens_details", None)
    reasoning = getattr(usage, "completion_tokens_details", None)
    return Expected(
        operation,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        source,
        cached=(details.cached_tokens or 0) if details else 0,
        reasoning=(reasoning.reasoning_tokens or 0) if reasoning else 0,
        streamed=streamed,
    )


def from_responses_usage(usage: Any, source: str, streamed: bool) -> Expected:
    return Expected(
        "responses",
        usage.input_tokens,
        usage.output_tokens,
        usage.total_tokens,
        source,
        cached=usage.input_tokens_details.cached_tokens,
        reasoning=usage.output_tokens_details.reasoning_tokens,
        streamed=streamed,
    )


def messages(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"You are terse. Codeword {MARKER}."},
        {"role": "user", "content": f"{text} {MARKER}"},
    ]


def tagged(case: str) -> dict[str, str]:
    return {"x-chargeback-case": case, "x-chargeback-cost-center": "CC-4100"}


def stream_pieces(chunks: list[Any]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def drive(port: int, mode: str) -> dict[str, Expected]:
    """Make every kind of call through the gateway; return what each row must hold."""
    client = sdk(port)
    streams = "reported" if mode == "buffered" else "gateway"
    expected: dict[str, Expected] = {}

    jwt = unsigned_jwt({"oid": USER_OID, "azp": "app-azp-7"})
    chat = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages("Name a river."),
        extra_headers={**tagged("chat"), "Authorization": f"Bearer {jwt}"},
    )
    expected["chat"] = from_chat_usage(chat.usage, "reported", False, "chat_completions")

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages("Describe a harbour."),
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=tagged("chat_stream"),
        )
    )
    assert len(stream_pieces(chunks)) > 3  # token by token, not one blob
    expected["chat_stream"] = from_chat_usage(chunks[-1].usage, streams, True, "chat_completions")

    plain = messages("Describe a lighthouse.")
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=plain, stream=True, extra_headers=tagged("chat_stream_plain")
        )
    )
    if mode == "buffered":
        # The client did not ask for usage; the gateway did, and the SDK saw that chunk too.
        usage = chunks[-1].usage
        expected["chat_stream_plain"] = from_chat_usage(usage, streams, True, "chat_completions")
    else:
        # Nothing reports usage: the gateway counted the prompt and the words it relayed.
        assert all(chunk.usage is None for chunk in chunks)
        received = sum(count_words(piece) for piece in stream_pieces(chunks))
        prompt = prompt_tokens("chat_completions", {"messages": plain})
        expected["chat_stream_plain"] = Expected(
            "chat_completions", prompt, received, prompt + received, "gateway", streamed=True
        )

    vectors = client.embeddings.create(
        model="text-embedding-3-large",
        input=[f"harbour cranes {MARKER}", "tide tables"],
        extra_headers=tagged("embeddings"),
    )
    expected["embeddings"] = Expected(
        "embeddings", vectors.usage.prompt_tokens, 0, vectors.usage.total_tokens, "reported"
    )

    response = client.responses.create(
        model="o4-mini", input=f"Plan a parser test. {MARKER}", extra_headers=tagged("responses")
    )
    expected["responses"] = from_responses_usage(response.usage, "reported", False)
    assert response.usage.output_tokens_details.reasoning_tokens > 0

    events = list(
        client.responses.create(
            model="gpt-4.1",
            input=f"Summarise the tide. {MARKER}",
            stream=True,
            extra_headers=tagged("responses_stream"),
        )
    )
    assert events[-1].type == "response.completed"
    expected["responses_stream"] = from_responses_usage(events[-1].response.usage, streams, True)

    v1 = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/openai/v1/",
        api_key="unused",
        default_headers={"api-key": KEY},
        max_retries=0,
    )
    response = v1.responses.create(
        model="gpt-4o", input=f"One word. {MARKER}", extra_headers=tagged("responses_v1")
    )
    expected["responses_v1"] = from_responses_usage(response.usage, "reported", False)

    legacy = client.completions.create(
        model="gpt-35-turbo-instruct",
        prompt=f"Once upon a time {MARKER}",
        max_tokens=40,
        extra_headers=tagged("completions"),
    )
    expected["completions"] = from_chat_usage(legacy.usage, "reported", False, "completions")

    images = client.images.generate(
        model="dall-e-3", prompt=f"A lighthouse {MARKER}", n=1, extra_headers=tagged("images")
    )
    assert len(images.data) == 1
    expected["images"] = Expected("image_generations", 0, 0, 0, "reported", images=1)

    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o",
            messages=messages("Hello."),
            extra_headers={**tagged("throttled"), "x-simulate-status": "429"},
        )
    expected["throttled"] = Expected("chat_completions", 0, 0, 0, "none", status=429)
    return expected


def hour_of(envelope: dict[str, Any]) -> str:
    return hour_key(datetime.fromisoformat(envelope["timestamp"]))


def table(name: str) -> pl.DataFrame:
    return pl.read_delta(str(Path(load_settings().lake) / name))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["buffered", "passthrough"])
def test_sdk_calls_are_billed_exactly_as_the_client_saw_them(
    mode, chargeback_env, start_gateway, envelope_validator
):
    gateway = start_gateway(mode)
    expected = drive(gateway.server_port, mode)

    envelopes = wait_for_stored([hour_key(CALL_HOUR)], len(expected))
    for envelope in envelopes:
        envelope_validator.validate(envelope)
        if envelope["response"]["streamed"]:
            kept = envelope["response"]["body"] is not None
            assert kept is (mode == "buffered")

    assert materialize_hours(sorted({hour_of(e) for e in envelopes}), show_progress=False) == []

    events = table("usage_events")
    assert table("quarantined_envelopes").is_empty()
    assert events.height == len(expected)
    for row in events.iter_rows(named=True):
        want = expected[json.loads(row["tags"])["case"]]
        got = Expected(
            row["operation"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["total_tokens"],
            row["token_source"],
            cached=row["cached_tokens"],
            reasoning=row["reasoning_tokens"],
            streamed=row["streamed"],
            images=row["images"],
            status=row["status_code"],
        )
        assert got == want, json.loads(row["tags"])["case"]
        assert row["subscription_id"] == "sub-marketing-01"
        assert row["cost_center"] == "CC-4100"

    chat = events.filter(pl.col("tags").str.contains('"case":"chat"'))
    assert chat["user_hash"].to_list() == [pseudonymise(USER_OID, b"test-pseudonym-key")]
    assert chat["app_id"].to_list() == ["app-azp-7"]
    costs = table("usage_costs").filter(pl.col("request_id") == chat["request_id"][0])
    assert costs["priced"].to_list() == [True] and costs["total_cost"][0] > 0

    for name in TABLES:
        frame = table(name)
        for column in frame.columns:
            if frame.schema[column] == pl.String:
                leaked = frame.filter(pl.col(column).str.contains(MARKER)).height
                assert leaked == 0, f"prompt text in {name}.{column}"
                assert frame.filter(pl.col(column) == USER_OID).is_empty()
