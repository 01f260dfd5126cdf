"""A unix-socket proxy in front of a real engine that delays container listings:
a slow engine on demand, to catch a poll in the middle."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def slow_engine(upstream: Path, path: Path, delay: float) -> Iterator[str]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(32)
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket, slow: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if slow and b"/containers/json" in chunk:
                    time.sleep(delay)
                dst.sendall(chunk)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(str(upstream))
            threading.Thread(target=pipe, args=(client, up, True), daemon=True).start()
            threading.Thread(target=pipe, args=(up, client, False), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"unix://{path}"
    finally:
        stop.set()
        server.close()
