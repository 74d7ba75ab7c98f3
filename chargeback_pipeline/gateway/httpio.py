"""Small HTTP pieces shared by the gateway and the simulator (stdlib `http.server`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler without access logs (they would carry paths, never bodies)."""

    protocol_version = "HTTP/1.1"

    def read_body(self) -> bytes | None:
        """The request body by Content-Length; None when the length is missing or not a number."""
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            return None
        return self.rfile.read(length) if length >= 0 else None

    def send_bytes(
        self,
        status: int,
        content_type: str,
        body: bytes,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A complete response with a Content-Length."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def start_chunked(
        self, status: int, content_type: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Headers of a response whose body follows in chunks (SSE)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        """One chunk, sent at once: the socket writer is unbuffered."""
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        return


class Server(ThreadingHTTPServer):
    """A threading server whose request threads never block interpreter exit."""

    daemon_threads = True


def start_in_thread(
    server: ThreadingHTTPServer, name: str, poll_interval: float = 0.05
) -> threading.Thread:
    """Serve in a daemon thread; stop with `server.shutdown()` (returns within `poll_interval`)
    then `server.server_close()`."""
    thread = threading.Thread(
        target=server.serve_forever, args=(poll_interval,), name=name, daemon=True
    )
    thread.start()
    return thread


def serve_until_interrupted(server: ThreadingHTTPServer) -> None:
    """Serve in this thread until Ctrl-C, then close the listening socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
