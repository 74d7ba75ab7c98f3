"""Fast path of envelope parsing (issue #9): typed msgspec structs, bodies decoded only as needed.

`fast_row` returns exactly the row `envelope_row` would, or None whenever it cannot be sure; the
caller then takes the reference path (orjson + envelope_row), which also words every quarantine
reason. Large bodies stay raw JSON string literals and only their tail is decoded.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import orjson

from chargeback_pipeline.lib.envelopes import (
    SUPPORTED_MAJOR,
    parse_timestamp,
    pseudonymise,
    usage_columns,
)
from chargeback_pipeline.lib.usage import (
    INT64_LIMIT,
    TAIL_READ_FROM,
    Usage,
    json_values,
    operation_of,
    resolve_usage,
    usage_from_object,
    usage_from_sse,
)

Int64 = Annotated[int, msgspec.Meta(ge=-INT64_LIMIT, le=INT64_LIMIT - 1)]
NULL = msgspec.Raw(b"null")
TAIL_BYTES = 2048
"""Raw bytes of a large body decoded first: its usage and model sit in the last few hundred."""
MAX_BYTES_PER_CHAR = 12
"""The most raw bytes one decoded character can take: a surrogate pair, \\ud83d\\ude00."""
COMMA_SEARCH_BYTES = 512
"""How far before the tail a `,` to cut at is looked for."""
STATUS_LIMIT = 2**31


class _Unsure(ValueError):
    """The fast path cannot vouch for this envelope; the reference path reads it."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    """Every field declared and strictly typed: msgspec skips an unknown field without the
    checks orjson makes (UTF-8, numbers beyond a double), so one sends the envelope back."""


class _Gateway(_Strict):
    service: str | None = None
    region: str | None = None


class _Api(_Strict):
    id: str | None = None
    operation_id: str | None = None


class _Named(_Strict):
    id: str | None = None
    name: str | None = None


class _Caller(_Strict):
    user_id: str | None = None
    app_id: str | None = None
    ip: str | None = None


class _Backend(_Strict):
    id: str | None = None
    deployment: str | None = None
    api_version: str | None = None


class _Request(_Strict):
    method: str | None = None
    path: str | None = None
    content_type: str | None = None
    body: msgspec.Raw = NULL
    body_bytes: Int64 | None = None
    truncated: bool | None = None


class _Response(_Strict):
    status: int | None = None
    content_type: str | None = None
    body: msgspec.Raw = NULL
    body_bytes: Int64 | None = None
    streamed: bool | None = None
    truncated: bool | None = None


class _GatewayTokens(_Strict):
    prompt: Int64 | None = None
    completion: Int64 | None = None
    total: Int64 | None = None
    estimated: bool | None = None


class _Envelope(_Strict):
    schema_version: str | None = None
    request_id: str | None = None
    timestamp: str | None = None
    elapsed_ms: Int64 | None = None
    gateway: _Gateway | None = None
    api: _Api | None = None
    subscription: _Named | None = None
    product: _Named | None = None
    caller: _Caller | None = None
    tags: dict[str, str] | None = None
    backend: _Backend | None = None
    request: _Request | None = None
    response: _Response | None = None
    gateway_tokens: _GatewayTokens | None = None


_DECODER = msgspec.json.Decoder(_Envelope)
_NO_GATEWAY, _NO_API, _NO_NAMED = _Gateway(), _Api(), _Named()
_NO_CALLER, _NO_BACKEND = _Caller(), _Backend()


def fast_row(
    raw: bytes | memoryview, source: str, source_line: int, pseudonym_key: bytes
) -> dict[str, Any] | None:
    """The row `envelope_row` makes of this envelope, or None when only the reference can tell."""
    try:
        envelope = _DECODER.decode(raw)
        return _row(envelope, source, source_line, pseudonym_key)
    except (ValueError, RecursionError):
        # msgspec's DecodeError, UnicodeDecodeError, orjson's, EnvelopeError and
        # UsageTypeError are all ValueErrors: the reference path finds and words the fault.
        return None


def _row(
    envelope: _Envelope, source: str, source_line: int, pseudonym_key: bytes
) -> dict[str, Any] | None:
    schema_version, request_id = envelope.schema_version, envelope.request_id
    request, response = envelope.request, envelope.response
    if not (schema_version and request_id and request and response):
        return None
    status = response.status
    if schema_version.split(".", 1)[0] != SUPPORTED_MAJOR or status is None:
        return None
    if not 0 <= status < STATUS_LIMIT:
        return None
    timestamp = parse_timestamp(envelope.timestamp)
    streamed = bool(response.streamed) or (response.content_type or "").startswith(
        "text/event-stream"
    )
    api = envelope.api or _NO_API
    operation = operation_of(request.path, api.operation_id)
    request_body = _literal(request.body)
    if request_body is not None:
        str(request_body, "utf-8")  # msgspec skips a Raw body's UTF-8; orjson would refuse it
    response_body = _literal(response.body)
    usage = _usage(response_body, streamed, envelope.gateway_tokens, operation)
    if usage.token_source == "none" and 200 <= status < 300:
        return None  # an estimate reads both bodies whole: the reference path does it
    subscription, product = envelope.subscription or _NO_NAMED, envelope.product or _NO_NAMED
    caller, backend = envelope.caller or _NO_CALLER, envelope.backend or _NO_BACKEND
    tags = envelope.tags or {}
    return {
        "request_id": request_id,
        "timestamp": timestamp,
        "subscription_id": subscription.id,
        "subscription_name": subscription.name,
        "product_id": product.id,
        "api_id": api.id,
        "app_id": caller.app_id,
        "gateway_region": (envelope.gateway or _NO_GATEWAY).region,
        "backend_id": backend.id,
        "deployment": backend.deployment,
        "api_version": backend.api_version,
        **usage_columns(tags, usage, operation, status, streamed),
        "user_hash": pseudonymise(caller.user_id, pseudonym_key),
        "elapsed_ms": envelope.elapsed_ms,
        "request_bytes": _size(request.body_bytes, request_body),
        "response_bytes": _size(response.body_bytes, response_body),
        "schema_version": schema_version,
        "source": source,
        "source_line": source_line,
    }


def _literal(body: msgspec.Raw) -> memoryview | None:
    """A body's raw JSON string literal, quotes included, in place; None for null."""
    literal = memoryview(body)
    if literal[:1] != b'"':
        if literal == b"null":
            return None
        raise _Unsure("body is not a string")
    return literal


def _size(declared: int | None, literal: memoryview | None) -> int | None:
    """What the reference reports: the declared body_bytes, else the body's UTF-8 length."""
    if declared is not None or literal is None:
        return declared
    return len(orjson.loads(literal).encode("utf-8"))


def _usage(
    literal: memoryview | None,
    streamed: bool,
    counts: _GatewayTokens | None,
    operation: str,
) -> Usage:
    """`resolve_usage` of the body, decoding only the tail of a large one when that is proof."""
    reported = None if literal is None else tail_usage(literal, streamed, operation)
    if reported is not None:
        return reported
    body = None if literal is None else orjson.loads(literal)
    gateway_tokens = None if counts is None else msgspec.structs.asdict(counts)
    return resolve_usage(body, streamed, gateway_tokens, operation)


def tail_usage(literal: memoryview, streamed: bool, operation: str) -> Usage | None:
    """Reported usage proven from a body literal's tail alone, or None to read the whole body."""
    if operation == "image_generations" or len(literal) <= TAIL_BYTES:
        return None  # images are counted from the whole body
    if not _is_utf8(literal):
        return None  # the reference path words the fault orjson finds
    if streamed or literal[:6] == b'"data:' or literal[:7] == b'"event:':
        _, tail = _decoded_tail(literal, TAIL_BYTES)
        return _sse_tail_usage(tail) if tail else None
    if literal[:2] != b'"{' or len(literal) - 2 <= TAIL_READ_FROM:
        return None  # the reference parses a body this short whole
    cut, tail = _decoded_tail(literal, _keep_for_length(len(literal)))
    # The reference reads the tail only past TAIL_READ_FROM characters: make sure of that.
    if tail is None or len(tail) + cut // MAX_BYTES_PER_CHAR <= TAIL_READ_FROM:
        return None
    return _json_tail_usage(tail)


def _is_utf8(literal: memoryview) -> bool:
    """Whether the bytes are valid UTF-8, as orjson checks and msgspec does not in a Raw body."""
    try:
        str(literal, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _keep_for_length(size: int) -> int:
    """Raw tail bytes to decode so that, with the head's least length, the body is likely to
    prove longer than TAIL_READ_FROM characters (one escape per ten tail bytes assumed)."""
    head_most = (9 * size - 10 * (TAIL_READ_FROM + 2)) * MAX_BYTES_PER_CHAR // 98
    return max(TAIL_BYTES, size - head_most)


def _decoded_tail(literal: memoryview, keep: int) -> tuple[int, str | None]:
    """The body's text after the last `,` at least `keep` bytes before the end, and where.

    A `,` byte is never part of an escape or a multi-byte character, so it starts a valid literal.
    """
    if keep >= len(literal) - 2:
        return -1, None
    start = max(1, len(literal) - keep - COMMA_SEARCH_BYTES)
    window = bytes(literal[start:])
    cut = window.rfind(b",", 0, len(window) - keep)
    if cut < 0:
        return -1, None  # no comma near: read the whole body
    try:
        return start + cut, orjson.loads(b'"' + window[cut + 1 :])
    except orjson.JSONDecodeError:
        return -1, None


def _json_tail_usage(tail: str) -> Usage | None:
    """`usage_from_json_tail` of the whole body, when the tail holds both values it looks for.

    Both are searched from the end, so a hit in the tail is the hit in the whole body.
    """
    usage = next((v for v in json_values(tail, "usage") if isinstance(v, dict)), None)
    if usage is None:
        return None
    model = next((v for v in json_values(tail, "model") if isinstance(v, str) and v), None)
    return None if model is None else usage_from_object(usage, model)


def _sse_tail_usage(tail: str) -> Usage | None:
    """`usage_from_sse` of the whole body, from the whole events in the tail.

    Events are read last first; those after the tail's first blank line are the body's own, in
    the same order, so a usage found among them is the one the whole body yields.
    """
    if "\r" in tail:
        tail = tail.replace("\r\n", "\n")
    start = tail.find("\n\n")
    return None if start < 0 else usage_from_sse(tail[start:])
