"""Fast path of envelope parsing (issue #9): the envelope decoded in one pass into typed structs.

`fast_row` returns exactly the row `envelope_row` would, or None whenever it cannot be sure; the
caller then takes the reference path (orjson + envelope_row), which also words every quarantine
reason. Bodies arrive as text, so usage is read by the reference's own functions.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from chargeback_pipeline.lib.envelopes import (
    SUPPORTED_MAJOR,
    body_size,
    pseudonymise,
    timestamp_micros,
    usage_columns,
)
from chargeback_pipeline.lib.estimate import estimate_usage
from chargeback_pipeline.lib.usage import INT64_LIMIT, operation_of, resolve_usage

Int64 = Annotated[int, msgspec.Meta(ge=-INT64_LIMIT, le=INT64_LIMIT - 1)]
STATUS_LIMIT = 2**31


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
    body: str | None = None
    body_bytes: Int64 | None = None
    truncated: bool | None = None


class _Response(_Strict):
    status: int | None = None
    content_type: str | None = None
    body: str | None = None
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
    timestamp = timestamp_micros(envelope.timestamp)
    streamed = bool(response.streamed) or (response.content_type or "").startswith(
        "text/event-stream"
    )
    api = envelope.api or _NO_API
    operation = operation_of(request.path, api.operation_id)
    gateway_tokens = envelope.gateway_tokens
    counts = None if gateway_tokens is None else msgspec.structs.asdict(gateway_tokens)
    usage = resolve_usage(response.body, streamed, counts, operation)
    if usage.token_source == "none" and 200 <= status < 300:
        usage = estimate_usage(request.body, response.body, streamed) or usage
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
        "request_bytes": body_size(request.body_bytes, request.body),
        "response_bytes": body_size(response.body_bytes, response.body),
        "schema_version": schema_version,
        "source": source,
        "source_line": source_line,
    }
