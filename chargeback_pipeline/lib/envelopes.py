"""Usage envelopes (CONTRACT §1) reduced to one content-free row each; bodies never leave here."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from chargeback_pipeline.lib.estimate import estimate_usage
from chargeback_pipeline.lib.usage import (
    INT64_LIMIT,
    Usage,
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


def decode_envelope(raw: bytes | memoryview) -> dict[str, Any]:
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


@lru_cache(maxsize=65536)
def pseudonymise(user_id: str | None, key: bytes) -> str | None:
    """Keyed HMAC-SHA256 of a user id: stable per key, not reversible without it."""
    # Cached: an hour has far fewer users than calls.
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def timestamp_micros(value: Any) -> int:
    """`parse_timestamp` as microseconds since the epoch, the form a parsed row carries: Polars
    takes a column of ints several times faster than one of timezone-aware datetimes."""
    return (parse_timestamp(value) - _EPOCH) // _MICROSECOND


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
    return body_size(_typed(section, "body_bytes", int, where), section.get("body"))


def body_size(declared: int | None, body: Any) -> int | None:
    """A body's size: the declared body_bytes, else its UTF-8 length (None without a text)."""
    if declared is not None:
        return int(declared)
    return len(body.encode("utf-8")) if isinstance(body, str) else None


def _tags(tags: Mapping[str, Any]) -> Mapping[str, str]:
    for key, value in tags.items():
        if not isinstance(value, str):
            raise EnvelopeError("wrong_type", f"tags.{key} is {type(value).__name__}")
    return tags


_EMPTY: Mapping[str, Any] = {}
_SECTIONS: tuple[str, ...] = (
    "request",
    "response",
    "subscription",
    "product",
    "caller",
    "backend",
    "api",
)
_SECTIONS += ("gateway", "gateway_tokens", "tags")
# Optional string fields copied as they are: (row column, envelope section, key).
_TEXT_FIELDS = (
    ("subscription_id", "subscription", "id"),
    ("subscription_name", "subscription", "name"),
    ("product_id", "product", "id"),
    ("api_id", "api", "id"),
    ("app_id", "caller", "app_id"),
    ("gateway_region", "gateway", "region"),
    ("backend_id", "backend", "id"),
    ("deployment", "backend", "deployment"),
    ("api_version", "backend", "api_version"),
)


def _sections(envelope: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The envelope's objects by name (absent or null = empty); anything else is wrong_type."""
    found: dict[str, Mapping[str, Any]] = {}
    for name in _SECTIONS:
        value = envelope.get(name)
        if value is None:
            found[name] = _EMPTY
        elif type(value) is dict:
            found[name] = value
        else:
            raise EnvelopeError(
                "wrong_type", f"'{name}' is {type(value).__name__}, expected object"
            )
    for name in ("request", "response"):
        if name not in envelope or envelope[name] is None:
            raise EnvelopeError("missing_section", f"envelope has no '{name}' section")
    return found


def _texts(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    """The optional string fields of the row; a non-string value is wrong_type."""
    return {
        column: _typed(sections[section], key, str, section)
        for column, section, key in _TEXT_FIELDS
    }


USAGE_COLUMNS = (
    "cost_center",
    "project",
    "tags",
    "model",
    "operation",
    "status_code",
    "streamed",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "images",
    "token_source",
)
"""The columns `usage_values` fills, in its order."""


def usage_values(
    tags: Mapping[str, str], usage: Usage, operation: str, status: int, streamed: bool
) -> tuple[Any, ...]:
    """The row's tag, usage and call values (shared by the reference and the fast path)."""
    return (
        tags.get("cost-center"),
        tags.get("project"),
        orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode() if tags else "{}",
        usage.model,
        operation,
        status,
        streamed,
        usage.prompt_tokens,
        usage.cached_tokens,
        usage.completion_tokens,
        usage.reasoning_tokens,
        usage.total_tokens,
        usage.images,
        usage.token_source,
    )


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
    timestamp = timestamp_micros(envelope.get("timestamp"))
    sections = _sections(envelope)
    request, response = sections["request"], sections["response"]
    status = _typed(response, "status", int, "response")
    if status is None:
        raise EnvelopeError("missing_field", "response has no 'status'")
    if not 0 <= status < 2**31:
        raise EnvelopeError("bad_status", "response.status is not an HTTP status")
    texts = _texts(sections)
    tags = _tags(sections["tags"])
    body = _typed(response, "body", str, "response")
    streamed = bool(_typed(response, "streamed", bool, "response")) or (
        str(response.get("content_type") or "").startswith("text/event-stream")
    )
    operation = operation_of(
        _typed(request, "path", str, "request"), _typed(sections["api"], "operation_id", str, "api")
    )
    try:
        usage = resolve_usage(body, streamed, sections["gateway_tokens"] or None, operation)
    except UsageRangeError as error:
        raise EnvelopeError("absurd_tokens", str(error)) from None
    except UsageTypeError as error:
        raise EnvelopeError("wrong_type", str(error)) from None
    if usage.token_source == "none" and 200 <= status < 300:
        # A successful call with no counts at all is billed from an estimate, and says so.
        request_body = request.get("body") if type(request.get("body")) is str else None
        usage = estimate_usage(request_body, body, streamed) or usage
    user_id = _typed(sections["caller"], "user_id", str, "caller")
    return {
        "request_id": request_id,
        "timestamp": timestamp,
        **texts,
        **dict(
            zip(USAGE_COLUMNS, usage_values(tags, usage, operation, status, streamed), strict=True)
        ),
        "user_hash": pseudonymise(user_id, pseudonym_key),
        "elapsed_ms": _typed(envelope, "elapsed_ms", int, "envelope"),
        "request_bytes": _byte_size(request, "request"),
        "response_bytes": _byte_size(response, "response"),
        "schema_version": schema_version,
        "source": source,
        "source_line": source_line,
    }
