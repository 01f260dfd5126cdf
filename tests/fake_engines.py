"""Engines that misbehave on purpose: faults a real dockerd will not produce on demand.

Each serves HTTP on a unix socket in a thread. Used only to inject a fault.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


# --- hostile engines: raw sockets, so an answer can be anything ----------------------

VERSION = {"Version": "99.0", "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"}
EMPTY_ENGINE: dict[str, object] = {"/version": VERSION, "/info": {"Name": "fake"}, "/networks": [], "/containers/json": []}
Handler = Callable[[socket.socket], None]


def head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(body: object, status: str = "200 OK") -> Handler:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda conn: conn.sendall(head(status, Content_Length=str(len(data))) + data)


@dataclass
class RawEngine:
    """An HTTP engine on raw sockets: each route answers with whatever its handler writes.

    ``requests`` lists the paths asked for; ``cut`` is set when a handler's write fails
    because the client hung up on it.
    """

    url: str
    requests: list[str] = field(default_factory=list)
    cut: threading.Event = field(default_factory=threading.Event)


@contextmanager
def raw_engine(routes: dict[str, object], *, unix: Path | None = None) -> Iterator[RawEngine]:
    """Serve ``routes`` (path prefix → JSON, bytes or a handler) on a unix socket, or on
    127.0.0.1 when ``unix`` is None. Later keys win over earlier prefixes of the same path."""
    if unix is not None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(unix))
        url = f"unix://{unix}"
    else:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.listen(64)
    engine = RawEngine(url=url)
    ordered = sorted(routes.items(), key=lambda kv: -len(kv[0]))

    def serve(conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            path = request.split(b" ", 2)[1].decode().split("?")[0]
            path = "/" + path.split("/", 2)[-1] if path.startswith("/v1.") else path
            engine.requests.append(path)
            route = next((v for k, v in ordered if path.startswith(k)), None)
            handler = route if callable(route) else answer(route) if route is not None else answer({"message": "no such route"}, "404 Not Found")
            try:
                handler(conn)
            except OSError:
                engine.cut.set()

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield engine
    finally:
        server.close()


@dataclass
class Listener:
    """A TCP port on 127.0.0.1 that only counts who connects: where a redirect would go."""

    port: int
    connections: int = 0
    received: bytes = b""


@contextmanager
def listener() -> Iterator[Listener]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    seen = Listener(port=server.getsockname()[1])

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            seen.connections += 1
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    seen.received += conn.recv(65536)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield seen
    finally:
        server.close()


def dribble(prefix: bytes, byte: bytes = b" ", every: float = 1.0, count: int = 120) -> Handler:
    """Send ``prefix``, then one byte every ``every`` seconds: never idle long enough
    for a per-read timeout."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(prefix)
        for _ in range(count):
            time.sleep(every)
            conn.sendall(byte)

    return handler


def endless_chunks(chunk: bytes = b" " * 65536, limit: int = 512 * 1024 * 1024) -> Handler:
    """A chunked answer that does not end (within ``limit`` bytes: a bound for the test run)."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(head(Transfer_Encoding="chunked") + b"1\r\n[\r\n")
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        for _ in range(limit // len(chunk)):
            conn.sendall(framed)

    return handler
