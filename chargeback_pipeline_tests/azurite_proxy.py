"""A loopback proxy in front of Azurite adding the one List Blobs feature it lacks: `startFrom`.

delta-rs lists `_delta_log/` with `startFrom` to find new commits; Azurite 3.35 (the last release
that runs on Node 20) ignores the parameter and returns every commit, which delta-rs rejects from
the third commit on ("Invalid table version"). Real Azure Storage honours it. Everything else is
passed through untouched, so Azurite still authenticates and serves every request.
"""

from __future__ import annotations

import html
import http.client
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_BLOB = re.compile(rb"<Blob>.*?</Blob>", re.S)
_NAME = re.compile(rb"<Name>(.*?)</Name>", re.S)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade"}


def drop_before(listing: bytes, start_from: str) -> bytes:
    """Remove listed blobs whose names sort before `start_from` (Azure's startFrom semantics)."""

    def keep(match: re.Match[bytes]) -> bytes:
        name = _NAME.search(match.group(0))
        decoded = html.unescape(name.group(1).decode()) if name else ""
        return match.group(0) if decoded >= start_from else b""

    return _BLOB.sub(keep, listing)


def make_handler(upstream_port: int) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            body = self._request_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                start_from = parse_qs(urlsplit(self.path).query).get("startFrom")
                if start_from and response.status == 200:
                    payload = drop_before(payload, start_from[0])
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                # HEAD answers describe the blob, not this (empty) payload.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            finally:
                upstream.close()

        def _request_body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _relay

        def log_message(self, format: str, *args: object) -> None:
            return

    return Proxy


def main() -> None:
    """`python -m chargeback_pipeline_tests.azurite_proxy UPSTREAM_PORT PORT`.

    Runs as its own process: delta-rs holds the GIL while it waits on the network, so a proxy
    thread inside the same interpreter would deadlock it.
    """
    upstream_port, port = (int(arg) for arg in sys.argv[1:3])
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(upstream_port))
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
