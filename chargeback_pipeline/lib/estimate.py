"""Token estimates for calls with neither reported nor gateway usage, from text lengths only.

No tokenizer file can be fetched at run time here, so the estimate is OpenAI's published rule of
thumb: about four characters per token for English text, plus a few tokens of framing per chat
message. Rows estimated this way say so (`token_source = 'estimated'`); an asset check reports
their share of the hour. The text is only measured, never kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson

from chargeback_pipeline.lib.usage import Usage, sse_payloads

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def _texts(value: Any) -> Iterator[str]:
    """Every string under the content-bearing keys of a request or response document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key in ("content", "text", "prompt", "input", "delta", "message", "choices", "output"):
            if key in value:
                yield from _texts(value[key])


def text_tokens(characters: int) -> int:
    """Tokens for a number of characters of text, rounded up."""
    return math.ceil(characters / CHARS_PER_TOKEN)


def prompt_estimate(request_body: str | None) -> int:
    """Estimated prompt tokens of a request body (messages, prompt or input)."""
    if not request_body:
        return 0
    try:
        document = orjson.loads(request_body)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(document, dict):
        return 0
    messages = document.get("messages")
    framing = TOKENS_PER_MESSAGE * len(messages) if isinstance(messages, list) else 0
    characters = sum(
        len(text) for key in ("messages", "prompt", "input") for text in _texts(document.get(key))
    )
    return text_tokens(characters) + framing


def completion_estimate(response_body: str | None, streamed: bool) -> int:
    """Estimated completion tokens of a response body (JSON, or the deltas of an SSE stream)."""
    if not response_body:
        return 0
    documents: list[Any] = []
    if streamed or response_body.lstrip().startswith(("data:", "event:")):
        for payload in sse_payloads(response_body):
            try:
                documents.append(orjson.loads(payload))
            except orjson.JSONDecodeError:
                continue
    else:
        try:
            documents.append(orjson.loads(response_body))
        except orjson.JSONDecodeError:
            return 0
    characters = sum(
        len(text)
        for document in documents
        if isinstance(document, dict)
        for key in ("choices", "output", "delta")
        for text in _texts(document.get(key))
    )
    return text_tokens(characters)


def estimate_usage(
    request_body: str | None, response_body: str | None, streamed: bool
) -> Usage | None:
    """An estimate from the texts, or None when there is no text to measure."""
    prompt = prompt_estimate(request_body)
    completion = completion_estimate(response_body, streamed)
    if not prompt and not completion:
        return None
    return Usage(prompt, 0, completion, 0, prompt + completion, 0, None, "estimated")
