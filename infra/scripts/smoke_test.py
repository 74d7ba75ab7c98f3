"""Post-deploy smoke test: one chat completion through APIM, then wait for its envelope in Blob.

    APIM_SUBSCRIPTION_KEY=... python infra/scripts/smoke_test.py \
        --gateway-url https://<apim>.azure-api.net --deployment gpt-4o-mini \
        --store az://<account>/envelopes [--cost-center CC-3300] [--timeout 300]

The call carries `x-chargeback-smoke-test: <run id>` so it is recognisable in chargeback, and is
matched by the `x-chargeback-request-id` answer header, which is the envelope's `request_id`.
Exit 0 once that envelope is stored under its hour prefix; 1 if the call fails or the envelope
does not arrive before the timeout. Needs only the standard library, azure-identity and
azure-storage-blob (the Function's requirements.txt) and the repository on PYTHONPATH for the
store layout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chargeback_pipeline.store import open_store
from chargeback_pipeline.store.base import StoredEnvelope, StoredObject, split_object

REQUEST_ID_HEADERS = ("x-chargeback-request-id",)
"""Where the envelope's request_id comes back, from APIM and from `chargeback gateway` alike
(x-request-id stays Azure OpenAI's own id)."""
KEY_VARIABLE = "APIM_SUBSCRIPTION_KEY"
CLOCK_SKEW = timedelta(minutes=5)
"""How far APIM's request timestamp may sit before this machine's clock at sending time."""


class SearchableStore(Protocol):
    """What the search needs of an envelope store (the local and Blob backends both have it)."""

    def list_hour(self, hour_key: str) -> list[StoredObject]: ...

    def read_range(self, name: str, offset: int, length: int) -> bytes: ...

    def describe(self) -> str: ...


class SmokeFailure(RuntimeError):
    """The smoke test failed; the message says at which step."""


def completion_request(
    gateway_url: str,
    deployment: str,
    api_version: str,
    key: str,
    tags: dict[str, str],
) -> urllib.request.Request:
    """A minimal chat completion for APIM's Azure OpenAI API, with chargeback tags as headers."""
    url = (
        f"{gateway_url.rstrip('/')}/openai/deployments/{deployment}/chat/completions"
        f"?api-version={api_version}"
    )
    body = {"messages": [{"role": "user", "content": "Reply with the word ok."}], "max_tokens": 5}
    headers = {"Content-Type": "application/json", "api-key": key}
    headers |= {f"x-chargeback-{name}": value for name, value in tags.items()}
    return urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")


def send_call(request: urllib.request.Request, timeout: float = 60) -> str:
    """Send the call and return APIM's request id; any non-2xx answer fails the smoke test."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            found = (response.headers.get(name) for name in REQUEST_ID_HEADERS)
            request_id = next((value for value in found if value), None)
    except urllib.error.HTTPError as error:
        # The body of an APIM or Azure OpenAI error says why (key, cost center, quota); no prompt.
        detail = error.read(2000).decode("utf-8", "replace")
        raise SmokeFailure(f"the call through APIM answered {error.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError) as error:
        raise SmokeFailure(f"the gateway did not answer: {error}") from None
    if not request_id:
        raise SmokeFailure(
            "the answer has no x-chargeback-request-id header (APIM policy not applied?)"
        )
    return request_id


def hour_keys(start: datetime, end: datetime) -> list[str]:
    """Hourly partition keys (`YYYY-MM-DD-HH:00`) from start's hour through end's, UTC."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    keys = []
    while hour <= end.astimezone(UTC):
        keys.append(f"{hour:%Y-%m-%d-%H}:00")
        hour += timedelta(hours=1)
    return keys


def is_envelope_of(item: StoredEnvelope, request_id: str) -> bool:
    """Whether a stored envelope is the call's; the substring test spares parsing the others."""
    if request_id.encode() not in item.raw:
        return False
    try:
        document = json.loads(item.raw)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("request_id") == request_id


@dataclass
class EnvelopeSearch:
    """Scans the hour prefixes for one request id, reading only what was appended since the
    previous scan (append blobs grow; earlier bytes were already searched)."""

    store: SearchableStore
    request_id: str
    read: dict[str, int] = field(default_factory=dict)

    def scan(self, hours: list[str]) -> StoredEnvelope | None:
        for item in self._new_envelopes(hours):
            if is_envelope_of(item, self.request_id):
                return item
        return None

    def _new_envelopes(self, hours: list[str]) -> Iterator[StoredEnvelope]:
        for hour in hours:
            for stored in self.store.list_hour(hour):
                offset = self.read.get(stored.name, 0)
                if stored.size <= offset:
                    continue
                data = self.store.read_range(stored.name, offset, stored.size - offset)
                self.read[stored.name] = stored.size
                yield from split_object(stored.name, data)


def wait_for_envelope(
    search: EnvelopeSearch,
    sent_at: datetime,
    timeout: float,
    interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> StoredEnvelope:
    """Scan until the envelope is stored; SmokeFailure after `timeout` seconds (at least once)."""
    deadline = clock() + timeout
    while True:
        found = search.scan(hour_keys(sent_at - CLOCK_SKEW, datetime.now(UTC)))
        if found is not None:
            return found
        if clock() >= deadline:
            raise SmokeFailure(
                f"no envelope with request_id {search.request_id} in {search.store.describe()} "
                f"after {timeout:.0f} s (forwarder down, APIM named values wrong, or late?)"
            )
        sleep(interval)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway-url", required=True, help="APIM gateway URL (apimGatewayUrl)")
    parser.add_argument("--deployment", required=True, help="Azure OpenAI deployment name")
    parser.add_argument("--api-version", default="2024-10-21")
    parser.add_argument(
        "--store",
        required=True,
        help="CHARGEBACK_STORE form: az://account/container or a connection string",
    )
    parser.add_argument("--container", default="envelopes", help="with a connection string")
    parser.add_argument("--cost-center", help="x-chargeback-cost-center (required in test/prod)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the blob")
    parser.add_argument("--interval", type=float, default=5, help="seconds between scans")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    key = os.environ.get(KEY_VARIABLE)
    if not key:
        print(f"smoke test: set {KEY_VARIABLE} (never pass the key as an argument)")
        return 2
    run_id = os.environ.get("GITHUB_RUN_ID") or uuid.uuid4().hex
    tags = {"smoke-test": run_id}
    if args.cost_center:
        tags["cost-center"] = args.cost_center
    request = completion_request(args.gateway_url, args.deployment, args.api_version, key, tags)
    try:
        sent_at = datetime.now(UTC)
        request_id = send_call(request)
        print(f"smoke test: call answered, request id {request_id}; waiting for its envelope")
        store: SearchableStore = open_store(args.store, args.container)
        search = EnvelopeSearch(store, request_id)
        found = wait_for_envelope(search, sent_at, args.timeout, args.interval)
    except SmokeFailure as failure:
        print(f"smoke test FAILED: {failure}")
        return 1
    print(f"smoke test: OK, envelope stored in {found.source} (line {found.line})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
