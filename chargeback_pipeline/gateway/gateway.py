"""An OpenAI-compatible endpoint doing what the APIM policies do, so real clients run locally.

Per call: require a subscription key, capture `x-chargeback-*` tags and the caller, inject
`stream_options.include_usage` (buffered mode), forward to the backend pool (priority, weight,
circuit breakers; a 429 or 5xx moves the call to the next backend before the client sees anything),
relay SSE chunk by chunk, then build the envelope (CONTRACT §1) naming the backend that served the
call and hand it to the forwarder. Built on the stdlib
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from chargeback_pipeline.gateway.delivery import Deliver, configured_delivery
from chargeback_pipeline.gateway.httpio import (
    Handler,
    Server,
    serve_until_interrupted,
    start_in_thread,
)
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
from chargeback_pipeline.gateway.pool import (
    Backend,
    BackendPool,
    CircuitBreaker,
    is_retryable,
    retry_after_seconds,
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
    """How the gateway behaves: upstream or backend pool, streaming mode, known keys, where
    envelopes go. A single `Upstream` is a pool of one."""

    upstream: Upstream | BackendPool
    mode: str
    subscriptions: Mapping[str, Subscription]
    deliver: Deliver
    service: str = "chargeback-local-gateway"
    region: str = "local"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    """Stamps each call's start; tests pin it to a finished hour, the only kind Dagster bills."""
    pool: BackendPool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        pool = self.upstream
        if not isinstance(pool, BackendPool):
            pool = BackendPool([Backend(pool)])
        object.__setattr__(self, "pool", pool)


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
        backend_id = None
        if subscription is None:
            relayed = self._refuse_key(request_id)
        else:
            if config.mode == "buffered":
                sent = with_usage_requested(route.operation, raw, document, api_version) or raw
            relayed, backend_id = self._relay(sent, request_id)
        call = Call(
            request_id=request_id,
            started=started,
            elapsed_ms=int((time.monotonic() - clock) * 1000),
            operation_id=route.operation_id,
            subscription=subscription,
            caller=caller_of(self.headers, self.client_address[0]),
            tags=chargeback_tags(self.headers),
            backend_id=backend_id,
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

    def _relay(self, sent: bytes, request_id: str) -> tuple[Relayed, str | None]:
        """Forward through the pool; the answer relayed and the id of the backend that gave it.

        Like the API policy's `retry` around `forward-request`: a 429 or 5xx (or no answer) goes
        to the next available backend at once, each backend at most once per call; the last
        backend's answer is relayed whatever it is."""
        pool = self.server.config.pool
        tried: list[str] = []
        backend = pool.next_backend()
        if backend is None:
            # APIM answers 503 itself when every backend of the pool has its breaker open.
            body = _apim_error(503, "No backend is available.")
            self._send_safely(503, JSON, body, [(REQUEST_ID_HEADER, request_id)])
            return Relayed(503, JSON, body, False), None
        while True:
            tried.append(backend.id)
            following = pool.next_backend(tried)
            relayed = self._attempt(backend, sent, request_id, last=following is None)
            if relayed is not None:
                return relayed, backend.id
            assert following is not None  # only a try with a backend left after it gives up
            LOG.info(
                "call %s: backend %s failed, retrying on %s", request_id, backend.id, following.id
            )
            backend = following

    def _attempt(
        self, backend: Backend, sent: bytes, request_id: str, *, last: bool
    ) -> Relayed | None:
        """One try on one backend; None when it failed and another backend should be tried."""
        upstream = backend.upstream
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
                backend.record_failure()
                if not last:
                    return None
                body = _apim_error(502, "The backend did not answer.")
                self._send_safely(502, JSON, body, [(REQUEST_ID_HEADER, request_id)])
                return Relayed(502, JSON, body, False)
            if is_retryable(response.status):
                backend.record_failure(retry_after_seconds(response.getheader("Retry-After")))
                if not last:
                    response.read()  # drained: nothing of a failed try reaches the client
                    return None
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


@dataclass(frozen=True)
class BackendSpec:
    """One `--backend` option: `ID=URL[,priority=N][,weight=N][,fail-rate=R][,fail-status=S]`;
    URL `simulator` starts a simulator for it in this process (the fail-* keys are its plan)."""

    id: str
    url: str
    priority: int = 1
    weight: int = 1
    fail_rate: float = 0.0
    fail_status: int = 429

    @classmethod
    def parse(cls, text: str) -> BackendSpec:
        head, *options = [part.strip() for part in text.split(",")]
        backend_id, _, url = head.partition("=")
        if not backend_id or not url:
            raise ValueError(f"--backend {text!r}: expected ID=URL[,priority=N][,weight=N]")
        keys = {"priority": int, "weight": int, "fail-rate": float, "fail-status": int}
        values: dict[str, Any] = {}
        for option in options:
            key, _, value = option.partition("=")
            if key not in keys or not value:
                raise ValueError(f"--backend {text!r}: unknown option {option!r}")
            values[key.replace("-", "_")] = keys[key](value)
        return cls(backend_id, url, **values)


@dataclass(frozen=True)
class BreakerSettings:
    """The circuit breaker rule every pool member gets (the Bicep/Terraform parameters)."""

    failures: int = 1
    interval: float = 10.0
    trip: float = 10.0


def build_pool(
    specs: list[BackendSpec],
    host: str,
    upstream_key: str | None,
    breaker: BreakerSettings,
) -> tuple[BackendPool, list[ThreadingHTTPServer]]:
    """The pool of `--backend` options and the simulators started for `simulator` members."""
    from chargeback_pipeline.gateway.simulator import Failures, build_simulator

    backends: list[Backend] = []
    simulators: list[ThreadingHTTPServer] = []
    for spec in specs:
        if spec.url == SIMULATOR:
            failures = Failures(spec.fail_status, rate=spec.fail_rate)
            simulator = build_simulator(host, 0, failures=failures)
            start_in_thread(simulator, f"simulator-{spec.id}")
            simulators.append(simulator)
            upstream = Upstream(f"http://{host}:{simulator.server_port}", None, spec.id)
        else:
            upstream = Upstream(spec.url, upstream_key, spec.id)
        rule = CircuitBreaker(breaker.failures, breaker.interval, breaker.trip)
        backends.append(Backend(upstream, spec.priority, spec.weight, rule))
    return BackendPool(backends), simulators


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
    backends: list[BackendSpec] | None = None,
    breaker: BreakerSettings | None = None,
) -> None:
    """Serve until interrupted. With `backends`, a pool of them; else one `upstream`: a base URL
    (default AZURE_OPENAI_ENDPOINT) or `simulator` (the default), which then runs in-process."""
    upstream = upstream or os.environ.get("AZURE_OPENAI_ENDPOINT") or SIMULATOR
    upstream_key = upstream_key or os.environ.get("AZURE_OPENAI_API_KEY")
    simulators: list[ThreadingHTTPServer] = []
    target: Upstream | BackendPool
    if backends:
        target, simulators = build_pool(backends, host, upstream_key, breaker or BreakerSettings())
        routed = ", ".join(f"{b.id} (priority {b.priority}, weight {b.weight})" for b in backends)
    elif upstream == SIMULATOR:
        from chargeback_pipeline.gateway.simulator import build_simulator

        single = build_simulator(host, simulator_port)
        start_in_thread(single, "simulator")
        simulators.append(single)
        base_url = f"http://{host}:{single.server_port}"
        target = Upstream(base_url, None, backend_id or SIMULATOR_ID)
        routed = f"{base_url} (simulator)"
    else:
        target = Upstream(upstream, upstream_key, backend_id or default_backend_id(upstream))
        routed = upstream
    config = GatewayConfig(
        upstream=target,
        mode=mode,
        subscriptions=load_subscriptions(subscriptions),
        deliver=configured_delivery(forwarder_url),
    )
    server = build_gateway(host, port, config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    store = forwarder_url or load_settings().store
    print(
        f"gateway ({mode}) on http://{host}:{server.server_port} -> {routed}; "
        f"envelopes to {store}\n"
        f"  AzureOpenAI(azure_endpoint='http://{host}:{server.server_port}', "
        f"api_key='<subscription key>', api_version='2024-10-21')",
        flush=True,
    )
    try:
        serve_until_interrupted(server)
    finally:
        for simulator in simulators:
            simulator.shutdown()
            simulator.server_close()
