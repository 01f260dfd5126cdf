"""HTTP to exactly one engine, with the poll's budget enforced at the socket.

The docker SDK speaks the Engine API over a ``requests`` session; this module gives
that session its only transport (``EngineAdapter``), so that whatever the SDK asks:

- connections go to the addresses the address guard checked (``Route``), never to a
  second DNS answer; TLS still verifies the engine's certificate against the name
  the operator registered;
- no request leaves for any other origin, and a redirect is refused the moment its
  status line arrives (``EngineRedirected``): the SDK's session would follow it, to
  wherever the engine says, with the client certificate;
- every byte read from the socket — status line, headers, chunk framing, body — is
  counted as it arrives, so an answer or a poll past its size limit stops before the
  memory is spent (``AnswerTooLarge``);
- every connection is registered with a ``Watchdog`` that shuts it at the deadline,
  so no thread stays blocked in a read of an engine that dribbles a byte at a time.

Imports ``requests`` and ``urllib3`` only; the SDK itself stays in ``engine.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import re
import socket
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from urllib3.util import connection as urllib3_connection

from .budget import Budget
from .errors import AnswerTooLarge, EngineRedirected, EngineRejected, EngineUnreachable, MalformedAnswer
from .text import printable, size, truncate

READ_CHUNK = 64 * 1024
# The answers a snapshot is read from, but for the inspects: when they are the same
# bytes as last time, so is the snapshot (a container's configuration cannot change
# without a new id; its state and networks are in the list).
FINGERPRINTED = frozenset({"/version", "/info", "/networks", "/containers/json"})
_API_PATH = re.compile(r"^/v[0-9.]+(?=/)")


def api_path(path_url: str) -> str:
    """``/v1.47/containers/json?all=1`` → ``/containers/json``: how errors name a call."""
    return _API_PATH.sub("", path_url.split("?", 1)[0]) or "/"


class Watchdog:
    """Shuts every registered connection when the budget's deadline passes.

    A blocked ``recv`` returns as soon as its socket is shut down, whichever thread
    waits in it. The watchdog holds a duplicate of each socket's descriptor, taken at
    connect time: the TLS layer detaches the original object, and a descriptor
    number alone could be reused by an unrelated file once its socket is closed.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._handles: set[socket.socket] = set()
        self._closed = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Watchdog:
        self._timer = threading.Timer(self.budget.remaining(), self.fire)
        self._timer.daemon = True
        self._timer.name = "posture-deadline"
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # Whatever is still connected belongs to a call nobody waits for any more.
        self._cut(final=True)

    def fire(self) -> None:
        """The deadline: end the budget, then shut every connection."""
        self.budget.expire()
        self._cut(final=True)

    def watch(self, sock: socket.socket) -> socket.socket:
        """Register a freshly connected socket; returns the handle to ``release``."""
        handle = sock.dup()
        with self._lock:
            if not self._closed:
                self._handles.add(handle)
                return handle
        handle.close()
        with contextlib.suppress(OSError):
            sock.close()
        raise self.budget.exceeded()

    def release(self, handle: socket.socket | None) -> None:
        if handle is None:
            return
        with self._lock:
            self._handles.discard(handle)
        handle.close()

    def _cut(self, *, final: bool) -> None:
        with self._lock:
            handles, self._handles = list(self._handles), set()
            self._closed = self._closed or final
        for handle in handles:
            with contextlib.suppress(OSError):
                handle.shutdown(socket.SHUT_RDWR)
            handle.close()


@dataclass
class Route:
    """Where one engine's connections go, and what they may spend."""

    budget: Budget
    watchdog: Watchdog
    per_read: float
    addresses: list[str] = field(default_factory=list)  # checked IP addresses, tcp
    port: int = 0
    unix_path: str = ""
    # The raw answers to the list calls (``FINGERPRINTED``), hashed in the order asked.
    answers: Any = field(default_factory=hashlib.sha256)

    def connect(self, host: str, socket_options: Any) -> socket.socket:
        """A connected socket to the engine, through the first address that answers."""
        if self.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.budget.timeout(self.per_read))
                sock.connect(self.unix_path)
            except BaseException:
                sock.close()
                raise
            return sock
        failure: OSError = OSError(f"{host} has no address to connect to")
        for address in self.addresses:
            try:
                # A literal address: create_connection resolves nothing.
                return urllib3_connection.create_connection((address, self.port), self.budget.timeout(self.per_read), socket_options=socket_options)
            except OSError as exc:  # refused or unreachable: the next address may answer
                failure = exc
        raise failure


class _Hold:
    """The watchdog's handle on one connection, released when nothing reads from it.

    http.client hands a connection's socket over to the response when the engine says
    ``Connection: close``, and closes the connection: the socket lives on until the
    response's reader is closed too. Like ``socket._io_refs``, count both owners.
    """

    def __init__(self, watchdog: Watchdog, handle: socket.socket) -> None:
        self._watchdog, self._handle = watchdog, handle
        self._owners = 1  # the connection
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            self._owners += 1

    def drop(self) -> None:
        with self._lock:
            self._owners -= 1
            last = self._owners == 0
        if last:
            self._watchdog.release(self._handle)


class _MeteredIO(socket.SocketIO):
    """The socket's reader, counting every byte into the budget as it arrives."""

    def __init__(self, sock: socket.socket, route: Route, what: str, hold: _Hold | None) -> None:
        super().__init__(sock, "rb")
        # As socket.makefile() does: the socket stays open until this reader closes,
        # even after http.client hands it over and closes its own reference.
        sock._io_refs += 1  # type: ignore[attr-defined]
        self._route, self._what, self._n = route, what, 0
        self._hold = hold
        if hold is not None:
            hold.take()

    def readinto(self, b: Any) -> int | None:
        n = super().readinto(b)
        if n:
            self._n += n
            self._route.budget.take(n, self._n, self._what)
        return n

    def close(self) -> None:
        if not self.closed and self._hold is not None:
            self._hold.drop()
        super().close()


class _MeteredResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, connection: _EngineConnectionMixin, what: str, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # the plain reader http.client made; replaced by a metered one
        self.fp = io.BufferedReader(_MeteredIO(sock, connection._route, what, connection._hold), READ_CHUNK)


class _EngineConnectionMixin:
    """Connects along the route, registers with the watchdog, meters its answers."""

    _route: Route
    _hold: _Hold | None = None

    def _setup(self, route: Route) -> None:
        self._route = route

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        # The connection opens inside request(): the response looks up its hold then.
        self.response_class = partial(_MeteredResponse, connection=self, what=api_path(url))
        super().request(method, url, *args, **kwargs)  # type: ignore[misc]

    def _new_conn(self) -> socket.socket:
        try:
            sock = self._route.connect(self.host, getattr(self, "socket_options", None))  # type: ignore[attr-defined]
        except TimeoutError as exc:
            raise urllib3.exceptions.ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc  # type: ignore[attr-defined]
        except OSError as exc:
            raise urllib3.exceptions.NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]
        # Registered before the TLS handshake, which an engine can dribble too.
        self._hold = _Hold(self._route.watchdog, self._route.watchdog.watch(sock))
        return sock

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.drop()


class EngineHTTPConnection(_EngineConnectionMixin, urllib3.connection.HTTPConnection):
    def __init__(self, *args: Any, route: Route, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup(route)


class EngineHTTPSConnection(_EngineConnectionMixin, urllib3.connection.HTTPSConnection):
    def __init__(self, *args: Any, route: Route, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup(route)


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = EngineHTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = EngineHTTPSConnection


@dataclass(frozen=True)
class TLSFiles:
    ca: str
    cert: str | None = None
    key: str | None = None


class EngineAdapter(requests.adapters.HTTPAdapter):
    """The session's one transport: one origin, one pool, the budget on every call."""

    def __init__(self, origin: str, route: Route, *, host: str, port: int, tls: TLSFiles | None, maxsize: int, shown_as: str) -> None:
        super().__init__(max_retries=0, pool_maxsize=maxsize)
        self.origin = origin.rstrip("/")
        self.route = route
        self.shown_as = shown_as
        if tls is None:
            self.pool: urllib3.connectionpool.HTTPConnectionPool = _HTTPPool(host, port, maxsize=maxsize, route=route)
        else:
            # The engine's own CA only, and the certificate checked against the host
            # name the operator registered (``host``), whatever address we connect to.
            self.pool = _HTTPSPool(host, port, maxsize=maxsize, cert_reqs="CERT_REQUIRED", ca_certs=tls.ca, cert_file=tls.cert, key_file=tls.key, route=route)

    # --- one origin, one pool -----------------------------------------------------

    def _pool_for(self, url: str) -> urllib3.connectionpool.HTTPConnectionPool:
        if not url.startswith(self.origin + "/"):
            raise EngineRejected(f"refused a request to {printable(truncate(url, 200))}: Posture talks to {self.shown_as} only")
        return self.pool

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None, cert: Any = None) -> Any:
        return self._pool_for(request.url)

    def get_connection(self, url: str, proxies: Any = None) -> Any:  # requests < 2.32
        return self._pool_for(url)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """TLS settings are the pool's own; the session's (and the environment's) do not apply."""

    def request_url(self, request: Any, proxies: Any) -> str:
        return request.path_url

    def close(self) -> None:
        self.pool.close()
        super().close()

    # --- every call ---------------------------------------------------------------

    def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        budget = self.route.budget
        what = api_path(request.path_url)
        per_read = budget.timeout(self.route.per_read)
        try:
            response = super().send(request, stream=True, timeout=per_read, verify=verify, cert=cert, proxies={})
        except (AnswerTooLarge, EngineRejected, EngineUnreachable):
            raise
        except Exception as exc:
            if budget.expired:
                raise budget.exceeded() from exc
            raise
        try:
            self._refuse(response, what)
            response._content = self._read_body(response, what)
            if what in FINGERPRINTED:
                self.route.answers.update(b"%s %d %d\n" % (what.encode(), response.status_code, len(response._content)) + response._content)
        except BaseException:
            response.close()  # never back to the pool half read
            raise
        return response

    def _refuse(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if 300 <= status < 400:
            location = printable(truncate(response.headers.get("Location", ""), 200))
            to = f" to {location}" if location else ""
            raise EngineRedirected(f"the engine answered {what} with a redirect ({status} {printable(response.reason)}){to}; Posture never follows redirects")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise MalformedAnswer(
                f"the engine answered something that is not the Docker API: {what} came {printable(truncate(encoding, 40))}-encoded, which Posture did not ask for"
            )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.route.budget.max_answer_bytes:
            raise AnswerTooLarge(
                f"the engine's answer to {what} announced {size(int(declared))}, past the {size(self.route.budget.max_answer_bytes)} limit per answer"
            )

    def _read_body(self, response: requests.Response, what: str) -> bytes:
        budget = self.route.budget
        body = bytearray()  # one growing buffer: a list of one-byte chunks would cost 50x
        try:
            for chunk in response.raw.stream(READ_CHUNK, decode_content=False):
                body += chunk
                budget.check()
        except (AnswerTooLarge, EngineRejected, EngineUnreachable):
            raise
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.SSLError, OSError) as exc:
            if budget.expired:
                raise budget.exceeded() from exc
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
                raise EngineUnreachable(f"the engine stopped sending its answer to {what} for {self.route.per_read:g} s") from exc
            raise EngineUnreachable(f"the engine closed the connection before its answer was complete ({what})") from exc
        _check_density(body, what)
        return bytes(body)


# Docker's answers spend 75-200 bytes per JSON object or array; "[{},{},...]" spends 3,
# and each costs ~60 bytes once parsed. Refusing more than one per 16 bytes (beyond a
# small allowance) keeps a parsed answer within a few times its size.
_DENSITY_ALLOWANCE = 10_000
_BYTES_PER_CONTAINER = 16


def _check_density(body: bytes | bytearray, what: str) -> None:
    containers = body.count(b"{") + body.count(b"[")  # an overcount: brackets in strings count too
    if containers > _DENSITY_ALLOWANCE + len(body) // _BYTES_PER_CONTAINER:
        raise MalformedAnswer(
            f"the engine answered something that is not the Docker API: its answer to {what} packs {containers} JSON objects and arrays into {size(len(body))}"
        )
