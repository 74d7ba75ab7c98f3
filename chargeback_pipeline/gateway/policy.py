"""What the APIM policies do, as plain functions: subscription keys, tags, caller, envelope.

Mirrors apim_policies/fragments (chargeback-capture-headers, -capture-caller, -stream-options,
-build-envelope) so local runs produce the envelopes the deployed gateway will.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hmac
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from chargeback_pipeline.lib.usage import usage_from_body

SCHEMA_VERSION = "1.0"
TAG_PREFIX = "x-chargeback-"
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 16, 64, 256
USER_HEADER = "x-end-user-id"
FIRST_STREAM_OPTIONS_VERSION = "2024-09-01"
"""Dated api-versions before this one reject `stream_options`."""
DEFAULT_SUBSCRIPTIONS = "subscriptions.csv"
"""Demo keys shipped beside this module; they map to the subscriptions of the reference data."""
SUBSCRIPTION_COLUMNS = ("key", "subscription_id", "subscription_name", "product_id", "product_name")


class Subscription(NamedTuple):
    """An APIM subscription as its key identifies it, with its product."""

    key: str
    subscription_id: str
    subscription_name: str | None
    product_id: str | None
    product_name: str | None


def load_subscriptions(path: Path | None = None) -> dict[str, Subscription]:
    """Subscription keys from a CSV or JSON file (a list of objects with the CSV's columns)."""
    if path is None:
        text = resources.files(__package__).joinpath(DEFAULT_SUBSCRIPTIONS).read_text("utf-8")
        rows: list[Mapping[str, Any]] = list(csv.DictReader(io.StringIO(text)))
    elif path.suffix.lower() == ".json":
        rows = orjson.loads(path.read_bytes())
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    found: dict[str, Subscription] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping) or not row.get("key") or not row.get("subscription_id"):
            raise ValueError(f"{path or DEFAULT_SUBSCRIPTIONS}: entry {number} needs key and id")
        values = [str(row.get(column) or "") or None for column in SUBSCRIPTION_COLUMNS]
        found[str(row["key"])] = Subscription(*values)  # type: ignore[arg-type]
    return found


def find_subscription(
    presented: str | None, subscriptions: Mapping[str, Subscription]
) -> Subscription | None:
    """The subscription whose key was presented; every key is compared in constant time."""
    if not presented:
        return None
    match = None
    for key, subscription in subscriptions.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            match = subscription
    return match


def chargeback_tags(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """`x-chargeback-*` request headers as tags keyed by the lower-cased suffix; like the policy,
    at most 16, keys up to 64 and values cut to 256 characters, empty ones dropped."""
    tags: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()[len(TAG_PREFIX) :]
        value = value.strip()
        if not name.lower().startswith(TAG_PREFIX) or not key or len(key) > MAX_TAG_KEY:
            continue
        if value and len(tags) < MAX_TAGS:
            tags[key] = value[:MAX_TAG_VALUE]
    return tags


def jwt_claims(authorization: str | None) -> dict[str, Any]:
    """DEMO ONLY: a bearer JWT's claims read WITHOUT checking its signature, issuer or expiry.

    APIM validates the token (`validate-jwt`) before trusting it; this gateway does not, so a
    caller can claim any identity. Never bill real users on identities read this way.
    """
    scheme, _, token = (authorization or "").partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return {}
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def caller_of(headers: Mapping[str, str] | Any, ip: str | None) -> dict[str, str | None]:
    """End user (JWT `oid`, else `sub`, else x-end-user-id), client app (`azp`, else `appid`)."""
    claims = jwt_claims(headers.get("Authorization"))

    def first(*values: Any) -> str | None:
        return next((v for v in values if isinstance(v, str) and v), None)

    return {
        "user_id": first(claims.get("oid"), claims.get("sub"), headers.get(USER_HEADER)),
        "app_id": first(claims.get("azp"), claims.get("appid")),
        "ip": ip,
    }


def with_usage_requested(
    operation: str, raw: bytes, body: Mapping[str, Any] | None, api_version: str | None
) -> bytes | None:
    """The request with `stream_options.include_usage` set, for a streamed chat or completion
    call (buffered mode's inbound policy); None when nothing changes.

    Without `stream_options` the property is inserted after the opening brace, leaving the
    caller's JSON otherwise byte for byte intact; an existing `stream_options` is rewritten.
    """
    if body is None or operation not in ("chat_completions", "completions"):
        return None
    if body.get("stream") is not True:
        return None
    version = api_version or ""
    if re.match(r"\d{4}-", version) and version < FIRST_STREAM_OPTIONS_VERSION:
        return None
    options = body.get("stream_options")
    if options is None:
        brace = raw.index(b"{")
        empty = raw[brace + 1 :].strip().startswith(b"}")
        inserted = b'"stream_options":{"include_usage":true}' + (b"" if empty else b",")
        return raw[: brace + 1] + inserted + raw[brace + 1 :]
    options = dict(options) if isinstance(options, Mapping) else {}
    if options.get("include_usage") is True:
        return None
    return orjson.dumps({**body, "stream_options": {**options, "include_usage": True}})


def gateway_tokens(
    status: int,
    streamed: bool,
    response_body: bytes | None,
    prompt_estimate: int,
    completion_count: int,
) -> dict[str, Any] | None:
    """APIM's own counts: exact from a JSON body's usage, estimated for streams, none on errors."""
    if status >= 400:
        return None
    if streamed:
        return {
            "prompt": prompt_estimate,
            "completion": completion_count,
            "total": prompt_estimate + completion_count,
            "estimated": True,
        }
    usage = (
        usage_from_body(response_body.decode("utf-8", "replace"), False) if response_body else None
    )
    if usage is None or not usage.total_tokens:
        return None
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
        "estimated": False,
    }


@dataclass(frozen=True)
class Call:
    """Everything the envelope says about one call, gathered while it ran."""

    request_id: str
    started: datetime
    elapsed_ms: int
    operation_id: str
    subscription: Subscription | None
    caller: dict[str, str | None]
    tags: dict[str, str]
    backend_id: str | None
    deployment: str | None
    api_version: str | None
    method: str
    path: str
    request_content_type: str | None
    request_body: bytes
    status: int
    response_content_type: str | None
    response_body: bytes | None
    streamed: bool
    gateway_tokens: dict[str, Any] | None


def iso_utc(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, as APIM's context.Timestamp."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _text(body: bytes | None) -> str | None:
    return None if body is None else body.decode("utf-8", "replace")


def build_envelope(call: Call, service: str, region: str) -> dict[str, Any]:
    """The usage envelope of CONTRACT §1, laid out like the shared examples."""
    subscription = call.subscription
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": call.request_id,
        "timestamp": iso_utc(call.started),
        "elapsed_ms": call.elapsed_ms,
        "gateway": {"service": service, "region": region},
        "api": {"id": "azure-openai", "operation_id": call.operation_id},
        "subscription": (
            {"id": subscription.subscription_id, "name": subscription.subscription_name}
            if subscription
            else None
        ),
        "product": (
            {"id": subscription.product_id, "name": subscription.product_name}
            if subscription and subscription.product_id
            else None
        ),
        "caller": call.caller,
        "tags": call.tags,
        "backend": {
            "id": call.backend_id,
            "deployment": call.deployment,
            "api_version": call.api_version,
        },
        "request": {
            "method": call.method,
            "path": call.path,
            "content_type": call.request_content_type,
            "body": _text(call.request_body),
            "body_bytes": len(call.request_body),
            "truncated": False,
        },
        "response": {
            "status": call.status,
            "content_type": call.response_content_type,
            "body": _text(call.response_body),
            "body_bytes": None if call.response_body is None else len(call.response_body),
            "streamed": call.streamed,
            "truncated": False,
        },
        "gateway_tokens": call.gateway_tokens,
    }
