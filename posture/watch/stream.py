"""One engine's ``/events`` stream over aiohttp: unix sockets, tcp with or without TLS
client certificates, and ssh through the collector's tunnel (the system ssh client,
pinned host keys). Imports nothing from Django: it is given an ``EngineTarget`` whose
credentials are files, as the collector is.

Everything read from the engine is bounded: the response headers (aiohttp's limits),
each event line (``MAX_EVENT_BYTES``), the body of an error answer, and the buffer
between the socket and the parser (``READ_BUFSIZE``, with flow control).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeVar

import aiohttp
from aiohttp.http_exceptions import LineTooLong

from posture.collector import EngineTarget, EngineURL, MalformedAnswer
from posture.collector.address import ForbiddenAddress, resolve_and_check
from posture.collector.engine import EngineError, EngineRejected, EngineUnreachable, ssh_tunnel

from .events import FILTERS, MAX_EVENT_BYTES, NANO, BadEvent, Event, parse_event, since_param

T = TypeVar("T")
READ_BUFSIZE = 16 * 1024
ERROR_BODY_BYTES = 2048
# Dead tcp peers (a host that vanished without a FIN) are noticed in about a minute.
KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
# A flooding engine must not starve the other streams on the loop.
YIELD_EVERY = 100


def engine_addresses(host: str, port: int) -> list[str]:
    """Where the watcher may connect for a tcp engine: every address the name resolves to
    now, each checked by the collector's address guard (the one the polls use).

    The one place the watcher decides an address; blocking (run it in a thread).
    """
    try:
        return resolve_and_check(host, port)
    except ForbiddenAddress as exc:
        raise EngineRejected(str(exc)) from None
    except OSError as exc:
        raise EngineUnreachable(f"cannot resolve {host}: {exc.strerror or exc}") from None


def tls_context(target: EngineTarget) -> ssl.SSLContext:
    """Verify the engine against the host's own CA and present its client certificate."""
    try:
        ctx = ssl.create_default_context(cafile=str(target.tls_ca))
        if target.tls_cert and target.tls_key:
            ctx.load_cert_chain(str(target.tls_cert), str(target.tls_key))
    except (ssl.SSLError, OSError) as exc:
        raise EngineRejected(f"the host's TLS certificates cannot be used: {exc}") from None
    return ctx


def _failure(exc: BaseException, url: EngineURL) -> EngineError:
    """What went wrong, as the collector names it: rejected (will not heal) or unreachable."""
    text = str(exc)
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError) or "certificate" in text:
        return EngineRejected(f"TLS handshake with {url} failed: {text[:300]}")
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return EngineRejected(f"cannot open {url}: permission denied")
    if isinstance(exc, TimeoutError):
        return EngineUnreachable(f"{url} did not answer in time")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return EngineUnreachable(f"{url} closed the event stream")
    reason = getattr(exc, "strerror", None) or getattr(getattr(exc, "os_error", None), "strerror", None)
    return EngineUnreachable(f"cannot reach {url}: {reason or (text.splitlines()[0][:300] if text else type(exc).__name__)}")


async def _enter_in_thread(stack: contextlib.AsyncExitStack, cm: contextlib.AbstractContextManager[T]) -> T:
    """Enter a blocking context manager (the ssh tunnel) on a thread, and be sure it is
    exited even if we are cancelled while it is still being entered."""
    sync = contextlib.ExitStack()
    stack.push_async_callback(asyncio.to_thread, sync.close)
    entering = asyncio.ensure_future(asyncio.to_thread(sync.enter_context, cm))
    try:
        return await asyncio.shield(entering)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await entering
        raise


def _keepalive(response: aiohttp.ClientResponse) -> None:
    transport = response.connection.transport if response.connection else None
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class EventStream:
    """An open ``/events`` answer."""

    def __init__(self, response: aiohttp.ClientResponse, url: EngineURL) -> None:
        self._response = response
        self._url = url
        self.engine_time_nano = self._engine_time(response.headers.get("Date", ""))

    @staticmethod
    def _engine_time(header: str) -> int | None:
        """The engine's clock when the stream opened, to the second (its ``Date`` header)."""
        try:
            return int(parsedate_to_datetime(header).timestamp()) * NANO
        except (TypeError, ValueError, IndexError, OverflowError):
            return None

    async def events(self) -> AsyncIterator[Event]:
        """Events as they arrive, until the engine ends the stream. Raises
        ``MalformedAnswer`` for a line that is not an event, ``EngineUnreachable`` if
        the connection breaks."""
        content = self._response.content
        count = 0
        while True:
            try:
                line = await content.readuntil(b"\n", max_size=MAX_EVENT_BYTES)
            except LineTooLong:
                raise MalformedAnswer(f"{self._url} sent an event line of more than {MAX_EVENT_BYTES // 1024} KiB") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise _failure(exc, self._url) from exc
            if not line:
                return
            if line.strip():
                try:
                    yield parse_event(line)
                except BadEvent as exc:
                    raise MalformedAnswer(f"{self._url} sent something that is not an engine event: {exc}") from None
            count += 1
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def open_stream(target: EngineTarget, after_nano: int | None) -> AsyncIterator[EventStream]:
    """Subscribe to the engine's container, network and daemon events, replaying those
    after ``after_nano`` (engine clock) first. Raises ``EngineError`` or ``MalformedAnswer``."""
    url = target.url
    timeout = target.timeout
    params = {"filters": FILTERS}
    if after_nano is not None:
        params["since"] = since_param(after_nano)
    async with contextlib.AsyncExitStack() as stack:
        server_hostname: str | None = None
        try:
            if url.scheme in ("unix", "ssh"):
                path = url.path
                if url.scheme == "ssh":
                    workdir = Path(tempfile.mkdtemp(prefix="posture-watch-"))
                    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
                    path = (await _enter_in_thread(stack, ssh_tunnel(target, workdir))).removeprefix("unix://")
                connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=path)
                bases = ["http://docker"]
            else:
                if target.uses_tls:
                    tls: ssl.SSLContext | bool = tls_context(target)
                    server_hostname = url.host  # verified against the name registered, connected to the address checked
                elif target.insecure:
                    tls = False
                else:
                    raise EngineRejected(f"{url} is plain tcp without TLS; mark the host insecure to watch it anyway")
                addresses = await asyncio.to_thread(engine_addresses, url.host, url.port or 2376)
                scheme = "https" if tls else "http"
                bases = [f"{scheme}://{EngineURL(scheme='tcp', host=ip, port=url.port).netloc}" for ip in addresses]
                connector = aiohttp.TCPConnector(ssl=tls, use_dns_cache=False, limit=1)
            session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout),
                    trust_env=False,  # no proxy or CA bundle from the environment
                    auto_decompress=False,  # no compression bombs: the engine never compresses
                    read_bufsize=READ_BUFSIZE,
                )
            )
            response = None
            for i, base in enumerate(bases):
                try:
                    async with asyncio.timeout(timeout):  # until the headers; the body may stay quiet for ever
                        response = await stack.enter_async_context(
                            session.get(f"{base}/events", params=params, allow_redirects=False, server_hostname=server_hostname)
                        )
                    break
                except (aiohttp.ClientConnectorError, TimeoutError):
                    if i == len(bases) - 1:
                        raise
            assert response is not None
        except (EngineError, MalformedAnswer):
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _failure(exc, url) from exc
        if response.status != 200:
            body = await response.content.read(ERROR_BODY_BYTES)
            message = body.decode(errors="replace").strip()[:300]
            kind = EngineRejected if response.status in (401, 403) or 300 <= response.status < 400 else EngineUnreachable
            raise kind(f"{url} answered /events with {response.status}: {message}")
        _keepalive(response)
        yield EventStream(response, url)
