"""Fast path of envelope parsing (issue #9): the envelope read in one pass into flat fields.

`fast_row` returns exactly the row `envelope_row` would, or None whenever it cannot be sure; the
caller then takes the reference path (orjson + envelope_row), which also words every quarantine
reason. The fields come from the compiled scanner (ADR 0008) when it is built, else from msgspec;
bodies arrive as text either way, so usage is read by the reference's own functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from chargeback_pipeline.lib.envelopes import (
    SUPPORTED_MAJOR,
    USAGE_COLUMNS,
    body_size,
    pseudonymise,
    timestamp_micros,
    usage_values,
)
from chargeback_pipeline.lib.estimate import estimate_usage
from chargeback_pipeline.lib.usage import INT64_LIMIT, Usage, operation_of, resolve_usage

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


ROW_COLUMNS = (
    "request_id",
    "timestamp",
    "subscription_id",
    "subscription_name",
    "product_id",
    "api_id",
    "app_id",
    "gateway_region",
    "backend_id",
    "deployment",
    "api_version",
    *USAGE_COLUMNS,
    "user_hash",
    "elapsed_ms",
    "request_bytes",
    "response_bytes",
    "schema_version",
    "source",
    "source_line",
)
"""The values of a row `fast_row` returns, in its order (the columns `envelope_row` names)."""
EnvelopeFields = tuple[Any, ...]
"""schema_version, request_id, timestamp, elapsed_ms, gateway_region, api_id, operation_id,
subscription_id, subscription_name, product_id, user_id, app_id, tags, backend_id, deployment,
api_version, has_request, request_path, request_body, request_body_bytes, has_response, status,
response_content_type, response_body, response_body_bytes, streamed, the gateway's prompt,
completion and total tokens, then what only the compiled scanner fills: `reported`, the Usage
fields the body settles (response_body is then None), and that body's UTF-8 length. The order
`_envelope_scan.c` fills."""

_DECODER = msgspec.json.Decoder(_Envelope)
_NO_GATEWAY, _NO_API, _NO_NAMED = _Gateway(), _Api(), _Named()
_NO_CALLER, _NO_BACKEND = _Caller(), _Backend()
_NO_REQUEST, _NO_RESPONSE, _NO_TOKENS = _Request(), _Response(), _GatewayTokens()


def decoded_fields(raw: bytes | memoryview) -> EnvelopeFields | None:
    """The envelope's fields by msgspec: the path when the compiled scanner is not built."""
    envelope = _DECODER.decode(raw)
    api, caller = envelope.api or _NO_API, envelope.caller or _NO_CALLER
    subscription, backend = envelope.subscription or _NO_NAMED, envelope.backend or _NO_BACKEND
    request, response = envelope.request, envelope.response
    sent, answered = request or _NO_REQUEST, response or _NO_RESPONSE
    tokens = envelope.gateway_tokens or _NO_TOKENS
    return (
        envelope.schema_version,
        envelope.request_id,
        envelope.timestamp,
        envelope.elapsed_ms,
        (envelope.gateway or _NO_GATEWAY).region,
        api.id,
        api.operation_id,
        subscription.id,
        subscription.name,
        (envelope.product or _NO_NAMED).id,
        caller.user_id,
        caller.app_id,
        envelope.tags,
        backend.id,
        backend.deployment,
        backend.api_version,
        request is not None,
        sent.path,
        sent.body,
        sent.body_bytes,
        response is not None,
        answered.status,
        answered.content_type,
        answered.body,
        answered.body_bytes,
        answered.streamed,
        tokens.prompt,
        tokens.completion,
        tokens.total,
        None,
        None,
    )


def _compiled_scanner() -> Callable[[bytes | memoryview], EnvelopeFields | None] | None:
    try:
        from chargeback_pipeline.lib._envelope_scan import scan_envelope
    except ImportError:  # no C compiler at install time: msgspec reads the fields instead
        return None
    return scan_envelope


scan_envelope = _compiled_scanner() or decoded_fields
"""The scanner `fast_row` uses: compiled when built (`SCANNER` says which)."""
SCANNER = "compiled" if scan_envelope is not decoded_fields else "msgspec"


def fast_row(
    raw: bytes | memoryview, source: str, source_line: int, pseudonym_key: bytes
) -> tuple[Any, ...] | None:
    """The row `envelope_row` makes of this envelope as values in ROW_COLUMNS order, or None
    when only the reference can tell."""
    try:
        fields = scan_envelope(raw)
        return None if fields is None else _row(fields, source, source_line, pseudonym_key)
    except (ValueError, RecursionError):
        # msgspec's DecodeError, UnicodeDecodeError, orjson's, EnvelopeError and
        # UsageTypeError are all ValueErrors: the reference path finds and words the fault.
        return None


def _row(
    fields: EnvelopeFields, source: str, source_line: int, pseudonym_key: bytes
) -> tuple[Any, ...] | None:
    (
        schema_version,
        request_id,
        timestamp,
        elapsed_ms,
        gateway_region,
        api_id,
        operation_id,
        subscription_id,
        subscription_name,
        product_id,
        user_id,
        app_id,
        tags,
        backend_id,
        deployment,
        api_version,
        has_request,
        request_path,
        request_body,
        request_body_bytes,
        has_response,
        status,
        response_content_type,
        response_body,
        response_body_bytes,
        streamed,
        prompt,
        completion,
        total,
        reported,
        body_length,
    ) = fields
    if not (schema_version and request_id and has_request and has_response):
        return None
    if schema_version.split(".", 1)[0] != SUPPORTED_MAJOR or status is None:
        return None
    if not 0 <= status < STATUS_LIMIT:
        return None
    streamed = bool(streamed) or (response_content_type or "").startswith("text/event-stream")
    operation = operation_of(request_path, operation_id)
    if reported is not None:
        usage = Usage(*reported)
        response_bytes = body_length if response_body_bytes is None else response_body_bytes
    else:
        counts = None
        if prompt is not None or completion is not None or total is not None:
            counts = {"prompt": prompt, "completion": completion, "total": total}
        usage = resolve_usage(response_body, streamed, counts, operation)
        if usage.token_source == "none" and 200 <= status < 300:
            usage = estimate_usage(request_body, response_body, streamed) or usage
        response_bytes = body_size(response_body_bytes, response_body)
    request_bytes = body_size(request_body_bytes, request_body)
    return (
        request_id,
        timestamp_micros(timestamp),
        subscription_id,
        subscription_name,
        product_id,
        api_id,
        app_id,
        gateway_region,
        backend_id,
        deployment,
        api_version,
        *usage_values(tags or {}, usage, operation, status, streamed),
        pseudonymise(user_id, pseudonym_key),
        elapsed_ms,
        request_bytes,
        response_bytes,
        schema_version,
        source,
        source_line,
    )
