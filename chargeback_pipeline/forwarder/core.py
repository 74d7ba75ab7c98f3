"""Accept one envelope: authenticate, check size and framing, store it as received.

Refuses only what cannot be stored (CONTRACT §4); the pipeline judges everything else.
Standard library only, so the Azure Function package stays small.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from chargeback_pipeline.store.base import EnvelopeStore, StoreError


@dataclass(frozen=True)
class ForwardResult:
    """The HTTP answer to a delivery: status, a short message, and the stored object's name."""

    status: int
    message: str
    stored_as: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202


def is_authorised(presented: str | None, expected: str | None) -> bool:
    """Constant-time key check; no configured key means the platform authenticates (Entra ID)."""
    if not expected:
        return True
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.tzinfo else None
    except (ValueError, OverflowError):
        return None


def forward_envelope(
    body: bytes,
    store: EnvelopeStore,
    max_bytes: int,
    presented_key: str | None = None,
    expected_key: str | None = None,
) -> ForwardResult:
    """Store one envelope exactly as received, or say (4xx/503) why not."""
    if not is_authorised(presented_key, expected_key):
        return ForwardResult(401, "missing or wrong forwarder key")
    if len(body) > max_bytes:
        return ForwardResult(413, f"envelope is {len(body)} bytes; the limit is {max_bytes}")
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ForwardResult(400, "body is not JSON")
    except RecursionError:
        return ForwardResult(400, "body is JSON nested too deeply to store")
    if not isinstance(envelope, dict):
        return ForwardResult(400, "body is not a JSON object")
    request_id = envelope.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        return ForwardResult(400, "envelope has no request_id string")
    timestamp = _timestamp(envelope.get("timestamp"))
    if timestamp is None:
        return ForwardResult(400, "envelope has no ISO-8601 timestamp with a UTC offset")
    try:
        name = store.write_envelope(body, timestamp, request_id)
    except StoreError as error:
        return ForwardResult(503, f"storage unavailable, retry later: {error}")
    return ForwardResult(202, "stored", name)


def split_ndjson(data: bytes) -> list[tuple[int, bytes]]:
    """The non-empty lines of an NDJSON document with their 1-based line numbers."""
    return [(n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
