"""The forwarding Azure Function (Python v2 model): APIM posts usage envelopes to /api/envelopes.

Auth, size and framing checks and the write are `chargeback_pipeline.forwarder.core`'s, shared with
the local forwarder server; this file only adapts them to the Functions host.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import azure.functions as func

from chargeback_pipeline.forwarder.core import ForwardResult, forward_envelope, is_authorised
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import EnvelopeStore, StoreError, open_store

# FUNCTION level fails closed: the host refuses a request without a valid function or host key
# (`x-functions-key`) before Python runs, so a deployment whose EasyAuth or
# CHARGEBACK_FORWARDER_KEY was forgotten is still not an open write path into the store.
# Entra ID (EasyAuth validating APIM's managed-identity token) stacks on top; see README.md.
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

logger = logging.getLogger(__name__)

_stores: dict[tuple[str, str, str], EnvelopeStore] = {}
_stores_lock = threading.Lock()


def worker_store(spec: str, container: str) -> EnvelopeStore:
    """This worker process's store for these settings, opened on first use and then reused."""
    key = (spec, container, os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", ""))
    with _stores_lock:
        store = _stores.get(key)
    if store is None:
        # Opened outside the lock: in a storage outage each request fails on its own attempt
        # within seconds instead of queueing behind other threads' failing attempts.
        store = open_store(spec, container)
        with _stores_lock:
            store = _stores.setdefault(key, store)
    return store


@app.function_name("envelopes")
@app.route(route="envelopes", methods=["POST"])
def envelopes(req: func.HttpRequest) -> func.HttpResponse:
    """Store one envelope as received: 202, or 400/401/413/503 saying why not (CONTRACT §4)."""
    result, size = _handle(req)
    _log(result, size)
    payload = {"status": result.status, "message": result.message, "stored_as": result.stored_as}
    return func.HttpResponse(
        json.dumps(payload), status_code=result.status, mimetype="application/json"
    )


def _handle(req: func.HttpRequest) -> tuple[ForwardResult, int | None]:
    try:
        # Read per request (a few environment lookups) so changed app settings apply at once.
        settings = load_settings()
    except ValueError as error:
        return ForwardResult(503, f"forwarder misconfigured: {error}"), None
    key = req.headers.get("x-functions-key")
    # Checked before anything else so unauthenticated callers cannot make the worker open storage.
    if not is_authorised(key, settings.forwarder_key):
        return ForwardResult(401, "missing or wrong forwarder key"), None
    declared = _declared_length(req)
    if declared is not None and declared > settings.max_envelope_bytes:
        # Refused on the header alone, like the local server, without touching the body.
        return ForwardResult(413, f"envelope over {settings.max_envelope_bytes} bytes"), declared
    body = req.get_body()
    if not os.environ.get("CHARGEBACK_STORE"):
        # The default local folder would be the worker's own disk: envelopes accepted and lost.
        return ForwardResult(503, "CHARGEBACK_STORE is not set"), len(body)
    try:
        store = worker_store(settings.store, settings.container)
    except (StoreError, ValueError) as error:
        return ForwardResult(503, f"storage unavailable, retry later: {error}"), len(body)
    result = forward_envelope(body, store, settings.max_envelope_bytes, key, settings.forwarder_key)
    return result, len(body)


def _declared_length(req: func.HttpRequest) -> int | None:
    try:
        return int(req.headers.get("content-length") or "")
    except ValueError:
        return None


def _log(result: ForwardResult, size: int | None) -> None:
    # Status and size only: bodies hold prompts, and request ids do not belong in platform logs.
    if result.status == 202:
        logger.debug("envelope stored (%s bytes)", size)
    elif result.status >= 500:
        logger.error("envelope not stored: %s %s (%s bytes)", result.status, result.message, size)
    else:
        logger.warning("envelope refused: %s %s (%s bytes)", result.status, result.message, size)
