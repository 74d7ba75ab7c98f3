"""An OpenAI-compatible endpoint doing what the APIM policies do, so real clients run locally.

Per call: require a subscription key, capture `x-chargeback-*` tags and the caller, inject
`stream_options.include_usage` (buffered mode), forward to the upstream, relay SSE chunk by chunk,
then build the envelope (CONTRACT §1) and hand it to the forwarder. Built on the stdlib
`ThreadingHTTPServer` like the local forwarder: a thread per connection relaying unbuffered socket
writes is all a one-machine gateway needs, and it adds no web framework to the package.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from chargeback_pipeline.gateway.delivery import Deliver, configured_delivery
from chargeback_pipeline.gateway.httpio import Handler, Server, start_in_thread
from chargeback_pipeline.gateway.policy import (
    Call,
    Subscription,
    build_envelope,
    caller_of,
    chargeback_tags,
    find_subscription,
    gateway_tokens,
    load_subscriptions,
    with_usage_requested,
)
from chargeback_pipeline.gateway.routes import (
    Route,
    api_version_of,
    match_route,
    recorded_path,
    subscription_key_param,
    without_subscription_key,
)
from chargeback_pipeline.gateway.tokens import CompletionCounter, parse_json_object, prompt_tokens
from chargeback_pipeline.settings import load_settings

LOG = logging.getLogger(__name__)
MODES = ("buffered", "passthrough")
SIMULATOR = "simulator"
SIMULATOR_ID = "aoai-simulator"
REQUEST_ID_HEADER = "x-chargeback-request-id"
"""Response header naming the envelope's request_id, so a client can find its usage row."""
JSON = "application/json"
READ_SIZE = 64 * 1024
# Hop-by-hop headers, the gateway's own credentials, and compression (the envelope needs text).
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "accept-encoding",
        "api-key",
        "ocp-apim-subscription-key",
        "ocp-apim-trace",
    }
)
_RELAYED_PREFIXES = ("retry-after", "x-ratelimit-", "apim-request-id", "x-request-id", "x-ms-")


@dataclass(frozen=True)
class Upstream:
    """The Azure OpenAI endpoint (or the simulator) calls go to, and the key the gateway uses."""

    base_url: str
    api_key: str | None = None
    backend_id: str | None = None
    timeout: float = 300.0

    def connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.base_url)
        secure = parts.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        return kind(parts.hostname or "", parts.port, timeout=self.timeout)

    def target(self, path: str) -> str:
        return urlsplit(self.base_url).path.rstrip("/") + path


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway behaves: upstream, streaming mode, known keys, where envelopes go."""

    upstream: Upstream
    mode: str
    subscriptions: Mapping[str, Subscription]
    deliver: Deliver
    service: str = "chargeback-local-gateway"
    region: str = "local"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    """Stamps each call's start; tests pin it to a finished hour, the only kind Dagster bills."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


class Relayed(NamedTuple):
    """The upstream's answer as the envelope records it; `body` is None in passthrough streams."""

    status: int
    content_type: str | None
    body: bytes | None
    streamed: bool
    completion_count: int = 0


def upstream_headers(headers: Any, api_key: str | None) -> dict[str, str]:
    """Client headers minus hop-by-hop, subscription keys and tags; the upstream key added."""
    forwarded = {
        name: value
        for name, value in headers.items()
        if name.lower() not in _NOT_FORWARDED and not name.lower().startswith("x-chargeback-")
    }
    if api_key:
        # The gateway authenticates itself; a caller's bearer token was for the gateway only.
        forwarded = {k: v for k, v in forwarded.items() if k.lower() != "authorization"}
        forwarded["api-key"] = api_key
    forwarded["Accept-Encoding"] = "identity"
    return forwarded


def _apim_error(status: int, message: str) -> bytes:
    """APIM's own error body shape (not Azure OpenAI's)."""
    return orjson.dumps({"statusCode": status, "message": message})


class GatewayServer(Server):
    """The gateway on one address with its configuration and a count of failed deliveries."""

    def __init__(self, address: tuple[str, int], config: GatewayConfig) -> None:
        super().__init__(address, GatewayHandler)
        self.config = config
        self.delivery_failures = 0
        self._failures_lock = threading.Lock()

    def count_failed_delivery(self) -> None:
        with self._failures_lock:
            self.delivery_failures += 1


class GatewayHandler(Handler):
    server: GatewayServer

    def do_POST(self) -> None:
        started = self.server.config.clock()
        clock = time.monotonic()
        raw = self.read_body()
        if raw is None:
            self.close_connection = True
            self.send_bytes(411, JSON, _apim_error(411, "Send a Content-Length."))
            return
        route = match_route(self.path)
        if route is None:
            # APIM answers unknown operations itself and logs no call for them.
            self.send_bytes(404, JSON, _apim_error(404, "Resource not found"))
            return
        config = self.server.config
        request_id = str(uuid.uuid4())
        document = parse_json_object(raw)
        subscription = find_subscription(self._presented_key(), config.subscriptions)
        api_version = api_version_of(self.path, route)
        sent = raw
        if subscription is None:
            relayed = self._refuse_key(request_id)
        else:
            if config.mode == "buffered":
                sent = with_usage_requested(route.operation, raw, document, api_version) or raw
            relayed = self._relay(sent, request_id)
        call = Call(
            request_id=request_id,
            started=started,
            elapsed_ms=int((time.monotonic() - clock) * 1000),
            operation_id=route.operation_id,
            subscription=subscription,
            caller=caller_of(self.headers, self.client_address[0]),
            tags=chargeback_tags(self.headers),
            backend_id=config.upstream.backend_id if subscription else None,
            deployment=route.deployment or _model_of(document),
            api_version=api_version,
            method="POST",
            path=recorded_path(self.path),
            request_content_type=self.headers.get("Content-Type"),
            # The body as forwarded: after the inbound policy, as APIM's context.Request.Body.
            request_body=sent,
            status=relayed.status,
            response_content_type=relayed.content_type,
            response_body=relayed.body,
            streamed=relayed.streamed,
            gateway_tokens=gateway_tokens(
                relayed.status,
                relayed.streamed,
                relayed.body,
                prompt_tokens(route.operation, document),
                relayed.completion_count,
            ),
        )
        self._deliver(route, call)

    def _presented_key(self) -> str | None:
        return (
            self.headers.get("api-key")
            or self.headers.get("Ocp-Apim-Subscription-Key")
            or subscription_key_param(self.path)
        )

    def _refuse_key(self, request_id: str) -> Relayed:
        """APIM's 401 for a missing or unknown subscription key; the call is still recorded."""
        if self._presented_key():
            message = (
                "Access denied due to invalid subscription key. Make sure to provide a valid key "
                "for an active subscription."
            )
        else:
            message = (
                "Access denied due to missing subscription key. Make sure to include subscription "
                "key when making requests to an API."
            )
        body = _apim_error(401, message)
        self._send_safely(401, JSON, body, [(REQUEST_ID_HEADER, request_id)])
        return Relayed(401, JSON, body, False)

    def _relay(self, sent: bytes, request_id: str) -> Relayed:
        """Forward the call upstream and relay the answer; SSE goes on chunk by chunk."""
        upstream = self.server.config.upstream
        connection = upstream.connection()
        try:
            try:
                connection.request(
                    "POST",
                    upstream.target(without_subscription_key(self.path)),
                    body=sent,
                    headers=upstream_headers(self.headers, upstream.api_key),
                )
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as error:
                LOG.warning("call %s: upstream unreachable (%s)", request_id, type(error).__name__)
                body = _apim_error(502, "The backend did not answer.")
                self._send_safely(502, JSON, body, [(REQUEST_ID_HEADER, request_id)])
                return Relayed(502, JSON, body, False)
            content_type = response.getheader("Content-Type")
            headers = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower().startswith(_RELAYED_PREFIXES)
            ]
            headers.append((REQUEST_ID_HEADER, request_id))
            if (content_type or "").startswith("text/event-stream"):
                return self._relay_stream(response, content_type, headers)
            body = response.read()
            self._send_safely(response.status, content_type or JSON, body, headers)
            return Relayed(response.status, content_type, body, False)
        finally:
            connection.close()

    def _relay_stream(
        self,
        response: http.client.HTTPResponse,
        content_type: str | None,
        headers: list[tuple[str, str]],
    ) -> Relayed:
        """Relay SSE as it arrives; buffered mode keeps a copy, passthrough only counts tokens."""
        keep = self.server.config.mode == "buffered"
        parts: list[bytes] = []
        counter = CompletionCounter()
        client_open = True
        try:
            self.start_chunked(response.status, content_type or "text/event-stream", headers)
            while True:
                piece = response.read1(READ_SIZE)
                if not piece:
                    break
                counter.feed(piece)
                if keep:
                    parts.append(piece)
                self.write_chunk(piece)
            self.end_chunked()
        except (OSError, http.client.HTTPException):
            # A client that hangs up (the SDK closes after [DONE]) or an upstream cut: record
            # what passed; the pipeline falls back to the gateway's counts if usage is missing.
            client_open = False
        if not client_open:
            self.close_connection = True
        body = b"".join(parts) if keep else None
        return Relayed(response.status, content_type, body, True, counter.tokens)

    def _send_safely(
        self, status: int, content_type: str, body: bytes, headers: list[tuple[str, str]]
    ) -> None:
        """Answer the client; one that already hung up must not stop the envelope."""
        try:
            self.send_bytes(status, content_type, body, headers)
        except OSError:
            self.close_connection = True

    def _deliver(self, route: Route, call: Call) -> None:
        """One-way delivery after the client has its answer, like `send-one-way-request`."""
        config = self.server.config
        envelope = build_envelope(call, config.service, config.region)
        status, message = config.deliver(orjson.dumps(envelope))
        tokens = call.gateway_tokens or {}
        LOG.info(
            "call %s %s %s -> %s, %s ms, tokens %s, envelope %s",
            call.request_id,
            route.operation,
            call.deployment,
            call.status,
            call.elapsed_ms,
            tokens.get("total"),
            status,
        )
        if status != 202:
            self.server.count_failed_delivery()
            LOG.warning("call %s: envelope not stored: %s %s", call.request_id, status, message)


def _model_of(document: Mapping[str, Any] | None) -> str | None:
    model = document.get("model") if document else None
    return model if isinstance(model, str) and model else None


def default_backend_id(base_url: str) -> str:
    """A backend id from the upstream host: `myres` for myres.openai.azure.com."""
    host = urlsplit(base_url).hostname or "upstream"
    if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        return "local-upstream"
    return host.split(".", 1)[0]


def build_gateway(host: str, port: int, config: GatewayConfig) -> GatewayServer:
    """A gateway bound to host:port (0 = any free port); serve it with `serve_forever`."""
    return GatewayServer((host, port), config)


def serve_gateway(
    host: str = "127.0.0.1",
    port: int = 8080,
    upstream: str | None = None,
    mode: str = "buffered",
    *,
    upstream_key: str | None = None,
    subscriptions: Path | None = None,
    forwarder_url: str | None = None,
    backend_id: str | None = None,
    simulator_port: int = 0,
) -> None:
    """Serve until interrupted. `upstream` is a base URL (default AZURE_OPENAI_ENDPOINT) or
    `simulator` (the default without one), which then runs in this process."""
    upstream = upstream or os.environ.get("AZURE_OPENAI_ENDPOINT") or SIMULATOR
    simulator = None
    if upstream == SIMULATOR:
        from chargeback_pipeline.gateway.simulator import build_simulator

        simulator = build_simulator(host, simulator_port)
        start_in_thread(simulator, "simulator")
        base_url, backend = f"http://{host}:{simulator.server_port}", backend_id or SIMULATOR_ID
    else:
        base_url, backend = upstream, backend_id or default_backend_id(upstream)
        upstream_key = upstream_key or os.environ.get("AZURE_OPENAI_API_KEY")
    config = GatewayConfig(
        upstream=Upstream(base_url, upstream_key, backend),
        mode=mode,
        subscriptions=load_subscriptions(subscriptions),
        deliver=configured_delivery(forwarder_url),
    )
    server = build_gateway(host, port, config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    target = forwarder_url or load_settings().store
    print(
        f"gateway ({mode}) on http://{host}:{server.server_port} -> {base_url}"
        f"{' (simulator)' if simulator else ''}; envelopes to {target}\n"
        f"  AzureOpenAI(azure_endpoint='http://{host}:{server.server_port}', "
        f"api_key='<subscription key>', api_version='2024-10-21')",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if simulator is not None:
            simulator.shutdown()
            simulator.server_close()
