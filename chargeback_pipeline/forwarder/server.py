"""The forwarding function as a local HTTP endpoint: same core, same answers as in Azure."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chargeback_pipeline.forwarder.core import ForwardResult, forward_envelope
from chargeback_pipeline.gateway.httpio import serve_until_interrupted
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import EnvelopeStore, open_store

ROUTE = "/api/envelopes"


def make_handler(
    store: EnvelopeStore, max_bytes: int, expected_key: str | None
) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to one store and limits."""

    class ForwarderHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != ROUTE:
                self._answer(ForwardResult(404, f"POST envelopes to {ROUTE}"))
                return
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                self._answer(ForwardResult(411, "send a numeric Content-Length"))
                return
            if length > max_bytes:
                # Refuse before reading: the sender learns the limit without a large upload.
                self.close_connection = True
                self._answer(ForwardResult(413, f"envelope over {max_bytes} bytes"))
                return
            body = self.rfile.read(length)
            key = self.headers.get("x-functions-key")
            self._answer(forward_envelope(body, store, max_bytes, key, expected_key))

        def _answer(self, result: ForwardResult) -> None:
            payload = json.dumps(
                {"status": result.status, "message": result.message, "stored_as": result.stored_as}
            ).encode()
            self.send_response(result.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            # Access logs carry no bodies; keep them off by default like the Function host.
            return

    return ForwarderHandler


def build_server(host: str, port: int) -> ThreadingHTTPServer:
    """A server on host:port writing into the configured store."""
    settings = load_settings()
    store = open_store(settings.store, settings.container)
    handler = make_handler(store, settings.max_envelope_bytes, settings.forwarder_key)
    return ThreadingHTTPServer((host, port), handler)


def serve(host: str, port: int) -> None:
    """Serve until interrupted."""
    server = build_server(host, port)
    print(f"forwarder listening on http://{host}:{server.server_port}{ROUTE}", flush=True)
    serve_until_interrupted(server)
