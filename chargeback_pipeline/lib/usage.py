"""Token usage read from response bodies (JSON or SSE) and the gateway's counts, with precedence."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import orjson


class UsageTypeError(ValueError):
    """A usage object whose counts are not integers."""


class UsageRangeError(UsageTypeError):
    """A usage count no 64-bit column can hold: a broken counter, never a real call."""


INT64_LIMIT = 2**63
TAIL_READ_FROM = 8 * 1024
"""Response bodies longer than this (characters) have their usage read from the tail."""


class Usage(NamedTuple):
    """Billable quantities of one call and where the numbers came from."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    images: int = 0
    model: str | None = None
    token_source: str = "none"


NO_USAGE = Usage()


@lru_cache(maxsize=4096)
def operation_of(path: str | None, operation_id: str | None = None) -> str:
    """Name the OpenAI operation from the request path (APIM operation id as a fallback)."""
    route = (path or "").split("?", 1)[0].rstrip("/").lower()
    for suffix, name in (
        ("/chat/completions", "chat_completions"),
        ("/completions", "completions"),
        ("/embeddings", "embeddings"),
        ("/responses", "responses"),
        ("/images/generations", "image_generations"),
    ):
        if route.endswith(suffix):
            return name
    hint = (operation_id or "").lower()
    for key, name in (
        ("chatcompletion", "chat_completions"),
        ("embedding", "embeddings"),
        ("response", "responses"),
        ("image", "image_generations"),
        ("completion", "completions"),
    ):
        if key in hint.replace("_", ""):
            return name
    return "other"


def _count(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageTypeError(f"usage.{field} is {type(value).__name__}, expected integer")
    if not -INT64_LIMIT <= value < INT64_LIMIT:
        raise UsageRangeError(f"usage.{field} does not fit 64 bits")
    return value


def _detail(usage: Mapping[str, Any], section: str, field: str) -> int:
    details = usage.get(section)
    return _count(details.get(field), f"{section}.{field}") if isinstance(details, dict) else 0


def usage_from_object(usage: Mapping[str, Any], model: str | None) -> Usage:
    """Read an OpenAI `usage` object: Chat/Completions/Embeddings or Responses API field names."""
    if "input_tokens" in usage or "output_tokens" in usage:
        prompt = _count(usage.get("input_tokens"), "input_tokens")
        completion = _count(usage.get("output_tokens"), "output_tokens")
        cached = _detail(usage, "input_tokens_details", "cached_tokens")
        reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
    else:
        prompt = _count(usage.get("prompt_tokens"), "prompt_tokens")
        completion = _count(usage.get("completion_tokens"), "completion_tokens")
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
        reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
    total = _count(usage.get("total_tokens"), "total_tokens") or prompt + completion
    return Usage(prompt, cached, completion, reasoning, total, 0, model or None, "reported")


def _model_of(document: Mapping[str, Any]) -> str | None:
    model = document.get("model")
    return model if isinstance(model, str) and model else None


def _usage_from_document(document: Any) -> Usage | None:
    """Usage in one parsed JSON document: a response, a stream chunk or a Responses event."""
    if not isinstance(document, dict):
        return None
    inner = document.get("response")
    if isinstance(inner, dict) and isinstance(inner.get("usage"), Mapping):
        return usage_from_object(inner["usage"], _model_of(inner))
    usage = document.get("usage")
    images = len(document["data"]) if _is_image_list(document.get("data")) else 0
    if isinstance(usage, dict):
        found = usage_from_object(usage, _model_of(document))
        return found._replace(images=images) if images else found
    if images:
        return Usage(images=images, model=_model_of(document), token_source="reported")
    return None


def _is_image_list(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(item, dict) and ("url" in item or "b64_json" in item) for item in data)
    )


def sse_payloads(body: str) -> Iterator[str]:
    """The `data:` payloads of an SSE body, last event first (usage sits at the end)."""
    if "\r" in body:
        body = body.replace("\r\n", "\n")
    end = len(body)
    while end > 0:
        # Walk back event by event: only the last few frames of a long stream are touched.
        cut = body.rfind("\n\n", 0, end)
        event = body[cut + 2 if cut >= 0 else 0 : end]
        end = max(cut, 0)
        lines = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
        if lines:
            yield "\n".join(lines)


# \\u escapes of the letters of "usage" and "data" (a, d, e, g, s, t, u), hex in either case.
_ESCAPED_KEY_LETTER = re.compile(r"\\u00(?:6[1457]|7[345])", re.IGNORECASE)


def may_hold_usage(text: str) -> bool:
    """Whether JSON in `text` could hold a usage object or an image list: their keys appear as
    written, or with a letter behind a \\u escape (no other escape makes a letter)."""
    # Searched from the end, where a usage chunk sits: `in` would scan the whole stream first.
    return (
        text.rfind('"usage"') >= 0
        or text.rfind('"data"') >= 0
        or _ESCAPED_KEY_LETTER.search(text) is not None
    )


def usage_from_sse(body: str) -> Usage | None:
    """Usage from the final usage chunk or `response.completed` event; a cut frame is skipped."""
    if not may_hold_usage(body):
        return None  # most streams without a usage chunk: no need to parse every frame
    fallback_model: str | None = None
    for payload in sse_payloads(body):
        if payload == "[DONE]":
            continue
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        found = _usage_from_document(document)
        if found is not None:
            return found if found.model else found._replace(model=fallback_model)
        if fallback_model is None and isinstance(document, dict):
            fallback_model = _model_of(document)
    return None


_DECODER = json.JSONDecoder()


def json_values(text: str, key: str) -> Iterator[Any]:
    """Values of `"key":` in a JSON text, last first, decoding only those values."""
    needle = f'"{key}"'
    end = len(text)
    while (at := text.rfind(needle, 0, end)) >= 0:
        end = at
        if at and text[at - 1] == "\\":
            continue  # an escaped quote: the word sits inside a string value
        colon = at + len(needle)
        while colon < len(text) and text[colon] in " \t\r\n":
            colon += 1
        if colon >= len(text) or text[colon] != ":":
            continue
        start = colon + 1
        while start < len(text) and text[start] in " \t\r\n":
            start += 1
        try:
            yield _DECODER.raw_decode(text, start)[0]
        except ValueError:
            continue


def usage_from_json_tail(body: str) -> Usage | None:
    """Usage of a JSON response read from its last `usage` object, without parsing the rest.

    The usage object closes the response, after vectors or long completions; skipping the full
    parse keeps large bodies cheap. Image responses and anything unusual take the full parse.
    """
    usage = next((v for v in json_values(body, "usage") if isinstance(v, dict)), None)
    if usage is None:
        return None
    model = next((v for v in json_values(body, "model") if isinstance(v, str) and v), None)
    return usage_from_object(usage, model)


def usage_from_body(body: str | None, streamed: bool, counts_images: bool = False) -> Usage | None:
    """Usage reported by the model in a response body, or None when the body holds none.

    Image responses are parsed whole: the images are counted from their `data` list.
    """
    if not body:
        return None
    if streamed or body.lstrip().startswith(("data:", "event:")):
        return usage_from_sse(body)
    # Below a few KB orjson parses the whole body faster than the tail can be searched; a body
    # cut short is searched all the same, as its last whole usage object may be there.
    whole = counts_images or len(body) <= TAIL_READ_FROM
    if not whole and (fast := usage_from_json_tail(body)) is not None:
        return fast
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return usage_from_json_tail(body) if whole and not counts_images else None
    return _usage_from_document(document)


def usage_from_gateway(gateway_tokens: Mapping[str, Any] | None) -> Usage | None:
    """APIM's own token counts (token-limit policy variables), when it sent any."""
    if not isinstance(gateway_tokens, dict):
        return None
    prompt, completion, total = (gateway_tokens.get(k) for k in ("prompt", "completion", "total"))
    if prompt is None and completion is None and total is None:
        return None
    prompt_n = _count(prompt, "gateway_tokens.prompt")
    completion_n = _count(completion, "gateway_tokens.completion")
    total_n = _count(total, "gateway_tokens.total") or prompt_n + completion_n
    return Usage(prompt_n, 0, completion_n, 0, total_n, 0, None, "gateway")


def resolve_usage(
    body: str | None,
    streamed: bool,
    gateway_tokens: Mapping[str, Any] | None,
    operation: str = "other",
) -> Usage:
    """Token precedence: the model's reported usage, else the gateway's counts, else none."""
    reported = usage_from_body(body, streamed, counts_images=operation == "image_generations")
    return reported or usage_from_gateway(gateway_tokens) or NO_USAGE
