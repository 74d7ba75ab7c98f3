"""Usage envelopes (CONTRACT §1) reduced to one content-free row each; bodies never leave here."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from chargeback_pipeline.lib.estimate import estimate_usage
from chargeback_pipeline.lib.usage import (
    INT64_LIMIT,
    UsageRangeError,
    UsageTypeError,
    operation_of,
    resolve_usage,
)

SUPPORTED_MAJOR = "1"


class EnvelopeError(ValueError):
    """An envelope that cannot be read into a row; `code` is the quarantine reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def decode_envelope(raw: bytes) -> dict[str, Any]:
    """Parse one stored envelope; anything but a JSON object is an EnvelopeError."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        # orjson's message names the position, never the content.
        code = "invalid_utf8" if "UTF-8" in str(error) else "not_json"
        raise EnvelopeError(code, str(error).split(":")[0]) from None
    if not isinstance(document, dict):
        raise EnvelopeError("not_json_object", f"top level is {type(document).__name__}")
    return document


def pseudonymise(user_id: str | None, key: bytes) -> str | None:
    """Keyed HMAC-SHA256 of a user id: stable per key, not reversible without it."""
    if not user_id:
        return None
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_timestamp(value: Any) -> datetime:
    """An ISO-8601 timestamp with an explicit offset, as UTC."""
    if not isinstance(value, str):
        raise EnvelopeError(
            "bad_timestamp", f"timestamp is {type(value).__name__}, expected string"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EnvelopeError("bad_timestamp", "timestamp is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise EnvelopeError("bad_timestamp", "timestamp has no UTC offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise EnvelopeError(
            "bad_timestamp", "timestamp is outside the representable range"
        ) from None


def _section(envelope: Mapping[str, Any], name: str, required: bool = False) -> Mapping[str, Any]:
    value = envelope.get(name)
    if value is None:
        if required:
            raise EnvelopeError("missing_section", f"envelope has no '{name}' section")
        return {}
    # Exact type checks: decoded JSON has only builtin types, and abc checks cost per field.
    if type(value) is not dict:
        raise EnvelopeError("wrong_type", f"'{name}' is {type(value).__name__}, expected object")
    return value


def _typed(section: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = section.get(key)
    if value is None:
        return None
    if type(value) is not kind:  # also refuses True/False where an integer is expected
        expected = {str: "string", int: "integer", bool: "boolean"}[kind]
        raise EnvelopeError(
            "wrong_type", f"{where}.{key} is {type(value).__name__}, expected {expected}"
        )
    if isinstance(value, int) and not -INT64_LIMIT <= value < INT64_LIMIT:
        raise EnvelopeError("absurd_value", f"{where}.{key} does not fit 64 bits")
    return value


def _byte_size(section: Mapping[str, Any], where: str) -> int | None:
    declared = _typed(section, "body_bytes", int, where)
    if declared is not None:
        return int(declared)
    body = section.get("body")
    return len(body.encode("utf-8")) if isinstance(body, str) else None


def _tags(envelope: Mapping[str, Any]) -> dict[str, str]:
    tags = _section(envelope, "tags")
    for key, value in tags.items():
        if not isinstance(value, str):
            raise EnvelopeError("wrong_type", f"tags.{key} is {type(value).__name__}")
    return dict(tags)


def envelope_row(
    envelope: Mapping[str, Any], source: str, source_line: int, pseudonym_key: bytes
) -> dict[str, Any]:
    """Flatten one envelope into a usage row of ids, numbers and flags (no body text)."""
    schema_version = _typed(envelope, "schema_version", str, "envelope")
    request_id = _typed(envelope, "request_id", str, "envelope")
    if not schema_version or not request_id:
        missing = "schema_version" if not schema_version else "request_id"
        raise EnvelopeError("missing_field", f"envelope has no '{missing}'")
    if schema_version.split(".", 1)[0] != SUPPORTED_MAJOR:
        # A future major may move any field: never guess its meaning.
        raise EnvelopeError(
            "unknown_schema_major", f"schema_version major is not {SUPPORTED_MAJOR}"
        )
    timestamp = parse_timestamp(envelope.get("timestamp"))
    request = _section(envelope, "request", required=True)
    response = _section(envelope, "response", required=True)
    status = _typed(response, "status", int, "response")
    if status is None:
        raise EnvelopeError("missing_field", "response has no 'status'")
    if not 0 <= status < 2**31:
        raise EnvelopeError("bad_status", "response.status is not an HTTP status")
    subscription = _section(envelope, "subscription")
    product = _section(envelope, "product")
    caller = _section(envelope, "caller")
    backend = _section(envelope, "backend")
    api = _section(envelope, "api")
    gateway = _section(envelope, "gateway")
    tags = _tags(envelope)
    body = _typed(response, "body", str, "response")
    streamed = bool(_typed(response, "streamed", bool, "response")) or (
        str(response.get("content_type") or "").startswith("text/event-stream")
    )
    operation = operation_of(
        _typed(request, "path", str, "request"), _typed(api, "operation_id", str, "api")
    )
    try:
        usage = resolve_usage(
            body, streamed, _section(envelope, "gateway_tokens") or None, operation
        )
    except UsageRangeError as error:
        raise EnvelopeError("absurd_tokens", str(error)) from None
    except UsageTypeError as error:
        raise EnvelopeError("wrong_type", str(error)) from None
    if usage.token_source == "none" and 200 <= status < 300:
        # A successful call with no counts at all is billed from an estimate, and says so.
        request_body = request.get("body") if type(request.get("body")) is str else None
        usage = estimate_usage(request_body, body, streamed) or usage
    return {
        "request_id": request_id,
        "timestamp": timestamp,
        "subscription_id": _typed(subscription, "id", str, "subscription"),
        "subscription_name": _typed(subscription, "name", str, "subscription"),
        "product_id": _typed(product, "id", str, "product"),
        "api_id": _typed(api, "id", str, "api"),
        "cost_center": tags.get("cost-center"),
        "project": tags.get("project"),
        "tags": orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode(),
        "user_hash": pseudonymise(_typed(caller, "user_id", str, "caller"), pseudonym_key),
        "app_id": _typed(caller, "app_id", str, "caller"),
        "gateway_region": _typed(gateway, "region", str, "gateway"),
        "backend_id": _typed(backend, "id", str, "backend"),
        "deployment": _typed(backend, "deployment", str, "backend"),
        "api_version": _typed(backend, "api_version", str, "backend"),
        "model": usage.model,
        "operation": operation,
        "status_code": status,
        "streamed": streamed,
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "completion_tokens": usage.completion_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "total_tokens": usage.total_tokens,
        "images": usage.images,
        "token_source": usage.token_source,
        "elapsed_ms": _typed(envelope, "elapsed_ms", int, "envelope"),
        "request_bytes": _byte_size(request, "request"),
        "response_bytes": _byte_size(response, "response"),
        "schema_version": schema_version,
        "source": source,
        "source_line": source_line,
    }
