"""Token extraction: every shared example yields exactly its tokens, with the right source."""

from __future__ import annotations

import orjson
import polars as pl
import pytest

from chargeback_pipeline.lib.envelopes import EnvelopeError, decode_envelope, envelope_row
from chargeback_pipeline.lib.usage import operation_of, usage_from_body, usage_from_sse

KEY = b"k"

EXPECTED = {
    # stem: (prompt, cached, completion, reasoning, total, source, operation)
    "chat_completion": (1850, 1536, 24, 0, 1874, "reported", "chat_completions"),
    "chat_stream_buffered": (9, 0, 3, 0, 12, "reported", "chat_completions"),
    "chat_stream_passthrough": (412, 0, 188, 0, 600, "gateway", "chat_completions"),
    "embeddings": (8, 0, 0, 0, 8, "reported", "embeddings"),
    "responses_api": (14, 0, 530, 448, 544, "reported", "responses"),
    "throttled_429": (0, 0, 0, 0, 0, "none", "chat_completions"),
}


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_each_example_yields_exactly_its_tokens(example, stem):
    row = envelope_row(example(stem), "examples", 1, KEY)
    got = tuple(
        row[c]
        for c in (
            "prompt_tokens",
            "cached_tokens",
            "completion_tokens",
            "reasoning_tokens",
            "total_tokens",
            "token_source",
            "operation",
        )
    )
    assert got == EXPECTED[stem]


def test_buffered_stream_prefers_reported_usage_over_gateway_estimate(example):
    envelope = example("chat_stream_buffered")
    envelope["gateway_tokens"] = {"prompt": 99, "completion": 99, "total": 198, "estimated": True}
    row = envelope_row(envelope, "s", 1, KEY)
    assert (row["prompt_tokens"], row["completion_tokens"], row["token_source"]) == (
        9,
        3,
        "reported",
    )
    assert row["model"] == "gpt-4o-mini-2024-07-18"


def test_model_comes_from_the_response_when_it_names_one(example):
    assert envelope_row(example("chat_completion"), "s", 1, KEY)["model"] == "gpt-4o-2024-08-06"
    assert envelope_row(example("throttled_429"), "s", 1, KEY)["model"] is None


def test_sse_stream_cut_mid_frame_still_finds_the_earlier_usage_frame():
    body = (
        'data: {"choices": [], "model": "m-1", "usage": {"prompt_tokens": 5, '
        '"completion_tokens": 2, "total_tokens": 7}}\n\n'
        'data: {"choices": [{"delta": {"content": "cut he'
    )
    usage = usage_from_sse(body)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.model) == (5, 2, "m-1")


@pytest.mark.parametrize(
    "key", ['"usage"', '"us\\u0061ge"', '"\\u0075sage"', '"USAG\\u0045"', '"usag\\u0065"']
)
def test_stream_usage_key_written_with_escapes_is_still_found(key):
    body = (
        'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
        f'data: {{"choices": [], "model": "m-1", {key}: {{"prompt_tokens": 5}}}}\n\n'
        "data: [DONE]\n\n"
    )
    usage = usage_from_sse(body)
    if key.startswith('"USAG'):
        assert usage is None  # keys are case-sensitive: \u0045 is "E"
    else:
        assert usage is not None and (usage.prompt_tokens, usage.model) == (5, "m-1")


def test_stream_without_usage_chunk_falls_back_to_gateway_counts(example):
    envelope = example("chat_stream_buffered")
    frames = envelope["response"]["body"].split("\n\n")
    envelope["response"]["body"] = "\n\n".join(f for f in frames if '"usage"' not in f)
    row = envelope_row(envelope, "s", 1, KEY)
    assert (row["prompt_tokens"], row["completion_tokens"], row["token_source"]) == (
        9,
        3,
        "gateway",
    )


def test_streamed_responses_api_reads_response_completed_event():
    completed = {
        "type": "response.completed",
        "response": {
            "model": "o4-mini-2025-04-16",
            "usage": {
                "input_tokens": 20,
                "input_tokens_details": {"cached_tokens": 8},
                "output_tokens": 100,
                "output_tokens_details": {"reasoning_tokens": 64},
                "total_tokens": 120,
            },
        },
    }
    body = (
        'event: response.created\ndata: {"type": "response.created"}\n\n'
        'event: response.output_text.delta\ndata: {"type": "x", "delta": "hi"}\n\n'
        f"event: response.completed\ndata: {orjson.dumps(completed).decode()}\n\n"
    )
    usage = usage_from_body(body, streamed=True)
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (20, 8, 100)
    assert (usage.reasoning_tokens, usage.total_tokens, usage.model) == (
        64,
        120,
        "o4-mini-2025-04-16",
    )


def test_image_generation_counts_images():
    body = orjson.dumps({"created": 1, "data": [{"url": "https://x/1"}, {"url": "https://x/2"}]})
    usage = usage_from_body(body.decode(), streamed=False)
    assert usage is not None
    assert (usage.images, usage.total_tokens, usage.token_source) == (2, 0, "reported")


def test_legacy_completion_usage_is_read():
    body = orjson.dumps(
        {
            "object": "text_completion",
            "model": "gpt-35-turbo-instruct",
            "choices": [{"text": "x"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18},
        }
    ).decode()
    usage = usage_from_body(body, streamed=False)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 11)


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/openai/deployments/gpt-4o/chat/completions?api-version=1", "chat_completions"),
        ("/openai/deployments/gpt-35/completions", "completions"),
        ("/openai/deployments/e/embeddings", "embeddings"),
        ("/openai/v1/responses", "responses"),
        ("/openai/deployments/dall-e-3/images/generations", "image_generations"),
        ("/openai/models", "other"),
    ],
)
def test_operation_is_named_from_the_path(path, operation):
    assert operation_of(path) == operation


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "not_json"),
        (b'{"a": 1', "not_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[1, 2]", "not_json_object"),
    ],
)
def test_unreadable_envelopes_get_a_specific_code(raw, code):
    with pytest.raises(EnvelopeError) as error:
        decode_envelope(raw)
    assert error.value.code == code


def test_non_integer_usage_counts_are_wrong_type(example):
    envelope = example("chat_completion")
    body = orjson.loads(envelope["response"]["body"])
    body["usage"]["prompt_tokens"] = "1850"
    envelope["response"]["body"] = orjson.dumps(body).decode()
    with pytest.raises(EnvelopeError) as error:
        envelope_row(envelope, "s", 1, KEY)
    assert error.value.code == "wrong_type"


def test_user_id_is_pseudonymised_with_the_key(example):
    row = envelope_row(example("chat_completion"), "s", 1, KEY)
    other = envelope_row(example("chat_completion"), "s", 1, b"another key")
    assert row["user_hash"] != "3f1c9a2e-user"
    assert len(row["user_hash"]) == 64
    assert row["user_hash"] != other["user_hash"]


def test_usage_word_inside_content_does_not_fool_the_tail_reader():
    body = orjson.dumps(
        {
            "model": "gpt-4o-2024-08-06",
            "choices": [{"message": {"content": 'print "usage": {"prompt_tokens": 999}'}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    ).decode()
    usage = usage_from_body(body, streamed=False)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.model) == (
        3,
        4,
        "gpt-4o-2024-08-06",
    )


def test_truncated_json_body_has_no_reported_usage():
    body = '{"model": "m", "choices": [{"message": {"content": "long text cut he'
    assert usage_from_body(body, streamed=False) is None


def test_parallel_parse_equals_serial_parse(example, tmp_path):
    from datetime import UTC, datetime
    from functools import partial

    from chargeback_pipeline.lib import parse
    from chargeback_pipeline.store import LocalEnvelopeStore, read_hour, read_store_slice
    from chargeback_pipeline.store.base import hour_slices

    store = LocalEnvelopeStore(tmp_path)
    for n in range(40):
        envelope = example("embeddings")
        envelope["request_id"] = f"r{n}"
        store.write_envelope(orjson.dumps(envelope), datetime(2024, 8, 6, 13, tzinfo=UTC), "x")
    hour = "2024-08-06-13:00"
    # Small slices, so the hour spans several and the worker processes are used.
    slices = hour_slices(store.list_hour(hour), 100_000)
    read = partial(read_store_slice, str(tmp_path), "envelopes")
    serial = parse.parse_hour(read_hour(store, hour), KEY)
    parallel = pl.concat([rows for rows, _ in parse.parse_slices(read, slices, KEY, workers=2)])
    assert serial[0].equals(parallel)
    assert serial[0].height == 40
