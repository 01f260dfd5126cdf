"""Engines that misbehave on purpose: faults a real dockerd will not produce on demand.

Each serves HTTP on a unix socket in a thread. Used only to inject a fault.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def serving(path: Path, answers: dict[str, object]) -> Iterator[str]:
    """An HTTP server answering each path prefix with the given JSON (or raw bytes)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = self.path.split("?")[0]
            route = "/" + route.split("/", 2)[-1] if route.startswith("/v1.") else route
            body = next((v for k, v in answers.items() if route.startswith(k)), None)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = _UnixHTTPServer(str(path), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent(path: Path) -> Iterator[str]:
    """Accepts connections and never answers: a hung engine."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    try:
        yield f"unix://{path}"
    finally:
        sock.close()
