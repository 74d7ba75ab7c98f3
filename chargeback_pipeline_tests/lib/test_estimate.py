"""Calls with no counts at all are billed from a text-length estimate, marked `estimated`."""

from __future__ import annotations

import orjson

from chargeback_pipeline.lib.envelopes import envelope_row
from chargeback_pipeline.lib.estimate import completion_estimate, prompt_estimate, text_tokens

KEY = b"k"


def test_four_characters_make_a_token_rounded_up():
    assert (text_tokens(0), text_tokens(1), text_tokens(4), text_tokens(5)) == (0, 1, 1, 2)


def test_prompt_estimate_counts_message_text_and_framing():
    body = orjson.dumps({"messages": [{"role": "user", "content": "abcdefgh"}]}).decode()
    assert prompt_estimate(body) == 2 + 4


def test_completion_estimate_reads_stream_deltas():
    frames = [
        {"choices": [{"delta": {"content": "Hello "}}]},
        {"choices": [{"delta": {"content": "world!"}}]},
    ]
    body = "".join(f"data: {orjson.dumps(f).decode()}\n\n" for f in frames) + "data: [DONE]\n\n"
    assert completion_estimate(body, streamed=True) == 3


def test_stream_without_any_counts_is_estimated(example):
    envelope = example("chat_stream_buffered")
    frames = envelope["response"]["body"].split("\n\n")
    envelope["response"]["body"] = "\n\n".join(f for f in frames if '"usage"' not in f)
    envelope["gateway_tokens"] = None
    row = envelope_row(envelope, "s", 1, KEY)
    assert row["token_source"] == "estimated"
    assert row["completion_tokens"] == text_tokens(len("Hello!"))
    assert row["prompt_tokens"] == text_tokens(len("Say hello")) + 4


def test_failed_calls_are_never_estimated(example):
    row = envelope_row(example("throttled_429"), "s", 1, KEY)
    assert (row["token_source"], row["total_tokens"]) == ("none", 0)
