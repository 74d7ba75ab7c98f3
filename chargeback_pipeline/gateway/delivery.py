"""Hand each envelope to the forwarder: in-process into the store, or over HTTP like APIM."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import EnvelopeStore, open_store

Deliver = Callable[[bytes], tuple[int, str]]
"""Takes one serialised envelope; returns the forwarder's status and message (202 = stored)."""


def store_delivery(store: EnvelopeStore, max_bytes: int) -> Deliver:
    """The forwarder core in this process, writing into `store`."""

    def deliver(raw: bytes) -> tuple[int, str]:
        result = forward_envelope(raw, store, max_bytes)
        return result.status, result.message

    return deliver


def http_delivery(url: str, key: str | None = None, timeout: float = 10.0) -> Deliver:
    """POST to a forwarder (`chargeback serve-forwarder` or the Azure Function)."""

    def deliver(raw: bytes) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["x-functions-key"] = key
        request = urllib.request.Request(url, data=raw, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), "stored"
        except urllib.error.HTTPError as error:
            return int(error.code), str(error.reason)
        except OSError as error:
            return 503, f"forwarder unreachable: {error}"

    return deliver


def configured_delivery(forwarder_url: str | None = None) -> Deliver:
    """HTTP to `forwarder_url` with CHARGEBACK_FORWARDER_KEY, else the CHARGEBACK_STORE store."""
    settings = load_settings()
    if forwarder_url:
        return http_delivery(forwarder_url, settings.forwarder_key)
    return store_delivery(
        open_store(settings.store, settings.container), settings.max_envelope_bytes
    )
