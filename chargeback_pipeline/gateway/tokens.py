"""One deterministic token rule for the simulator's usage and the gateway's estimates.

A token is a whitespace-separated word; chat messages add 3 each and 3 prime the reply (OpenAI's
published chat overhead). The simulator bills by this rule, so against it the gateway's estimates
are exact by construction; against real Azure OpenAI they are estimates, as APIM's are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

PER_MESSAGE = 3
REPLY_PRIMING = 3


def count_words(text: str) -> int:
    """Whitespace-separated words: the simulator's token."""
    return len(text.split())


def _text_of(content: Any) -> str:
    """The text of a message content: a string or a list of text parts (images count nothing)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, Mapping)]
        return " ".join(text for text in texts if isinstance(text, str))
    return ""


def _messages_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    words = sum(
        count_words(_text_of(message.get("content")))
        for message in messages
        if isinstance(message, Mapping)
    )
    return words + PER_MESSAGE * len(messages) + REPLY_PRIMING


def _inputs_tokens(value: Any) -> int:
    """A string, a list of strings, or token arrays (one int = one token)."""
    if isinstance(value, str):
        return count_words(value)
    if isinstance(value, list):
        return sum(1 if isinstance(item, int) else _inputs_tokens(item) for item in value)
    return 0


def prompt_tokens(operation: str, body: Mapping[str, Any] | None) -> int:
    """Prompt tokens of a request body by the rule above (0 for a body that is not JSON)."""
    if body is None:
        return 0
    if operation == "chat_completions":
        return _messages_tokens(body.get("messages"))
    if operation == "responses":
        request_input = body.get("input")
        instructions = body.get("instructions")
        words = count_words(instructions) if isinstance(instructions, str) else 0
        if isinstance(request_input, list):
            return words + _messages_tokens(request_input)
        return words + _inputs_tokens(request_input)
    if operation == "completions":
        return _inputs_tokens(body.get("prompt"))
    if operation == "embeddings":
        return _inputs_tokens(body.get("input"))
    if operation == "image_generations":
        return _inputs_tokens(body.get("prompt"))
    return 0


def parse_json_object(raw: bytes) -> dict[str, Any] | None:
    """A request body as a JSON object, or None when it is not one."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


class CompletionCounter:
    """Counts completion tokens of an SSE stream as it passes, holding only the current frame."""

    def __init__(self) -> None:
        self.tokens = 0
        self._pending = b""

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream, in whatever pieces the network delivers."""
        self._pending = (self._pending + data).replace(b"\r\n", b"\n")
        *frames, self._pending = self._pending.split(b"\n\n")
        for frame in frames:
            self.tokens += _frame_tokens(frame)


def _frame_tokens(frame: bytes) -> int:
    """Words of visible output in one SSE frame: chat deltas, completion text, Responses deltas."""
    lines = [line[5:].strip() for line in frame.split(b"\n") if line.startswith(b"data:")]
    payload = b"\n".join(lines)
    if not payload or payload == b"[DONE]":
        return 0
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(document, Mapping):
        return 0
    if document.get("type") == "response.output_text.delta":
        delta = document.get("delta")
        return count_words(delta) if isinstance(delta, str) else 0
    choices = document.get("choices")
    if not isinstance(choices, list):
        return 0
    words = 0
    for choice in choices:
        if not isinstance(choice, Mapping):
            continue
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, Mapping) else choice.get("text")
        words += count_words(content) if isinstance(content, str) else 0
    return words
