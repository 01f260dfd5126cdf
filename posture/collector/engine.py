"""The one seam to the Docker Engine API: the only module that imports ``docker``.

``collect(target, previous, budget=...)`` reads one engine and returns a
``HostSnapshot``; ``probe(target, budget=...)`` reads ``/version`` for "test
connection". Both work within a ``Budget`` (one deadline, two size limits) and
through ``transport.EngineAdapter`` (checked addresses, no redirects, metered
answers, a watchdog at the deadline). Container inspects run on a bounded pool and
are skipped for containers whose id, state and networks are unchanged since
``previous`` (a container's configuration cannot change without re-creating it).

Whatever goes wrong with an engine leaves as an ``EngineError`` or a
``MalformedAnswer`` whose message a Viewer can read: ``_classify`` is the one place
that turns library exceptions into them.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import math
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from cryptography import x509

from . import hostio
from .address import ForbiddenAddress, Resolver, parse_ip, resolve_and_check, system_resolver
from .budget import DEFAULT_POLL_SECONDS, Budget
from .errors import (
    AnswerTooLarge,
    DeadlineExceeded,
    EngineError,
    EngineRedirected,
    EngineRejected,
    EngineUnreachable,
    MalformedAnswer,
)
from .parse import build_snapshot
from .snapshot import Connection, Container, HostSnapshot, Unchanged
from .ssh import ssh_options
from .target import EngineTarget
from .text import printable, truncate
from .transport import EngineAdapter, Route, TLSFiles, Watchdog, api_path

__all__ = [
    "AnswerTooLarge",
    "Budget",
    "DeadlineExceeded",
    "EngineError",
    "EngineRedirected",
    "EngineRejected",
    "EngineUnreachable",
    "MalformedAnswer",
    "Unchanged",
    "collect",
    "open_client",
    "probe",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
INSPECT_WORKERS = 8
NOT_DOCKER = "the engine answered something that is not the Docker API"
# Docker object ids are hex; names may appear where a proxy or an old engine lists
# them. Anything else would be pasted into a request path.
_OBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# --- errors -------------------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests and urllib3 nest the real reason in args."""
    seen: set[int] = set()
    stack = [exc]
    while stack and len(seen) < 32:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        stack += [c for c in (current.__cause__, current.__context__, getattr(current, "reason", None)) if isinstance(c, BaseException)]


def _engine_text(text: object, limit: int = 300) -> str:
    """Text that came from the engine, fit to be shown in an error message."""
    return printable(truncate(str(text), limit))


def _reason(exc: BaseException) -> str:
    """The innermost useful sentence of a requests/urllib3/docker error chain."""
    text = str(exc)
    for marker in ("certificate has expired", "certificate verify failed", "alert certificate expired", "alert bad certificate", "alert unknown ca"):
        if marker in text:
            detail = text[text.index(marker) :].split("'")[0]
            return _engine_text(re.sub(r"\s*\(_ssl\.c:\d+\)?.*$", "", detail).strip(" :)"))
    for marker in ("Connection refused", "No such file or directory", "Permission denied", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return _engine_text(text.splitlines()[0]) if text else type(exc).__name__


def _classify(exc: BaseException, url: str, budget: Budget) -> EngineError | MalformedAnswer:
    """The one translation of what went wrong into an error the poller and a Viewer understand."""
    if isinstance(exc, EngineError | MalformedAnswer):
        return exc
    if budget.expired:
        return budget.exceeded()
    causes = list(_causes(exc))

    def found(*kinds: type[BaseException]) -> BaseException | None:
        return next((c for c in causes if isinstance(c, kinds)), None)

    if isinstance(exc, ForbiddenAddress):
        return EngineRejected(str(exc))
    if (api := found(docker.errors.APIError)) is not None:
        return _api_error(api, url)  # type: ignore[arg-type]
    if (bad := found(json.JSONDecodeError, UnicodeDecodeError)) is not None:
        return MalformedAnswer(f"{NOT_DOCKER}: {_engine_text(bad, 200)}")
    if found(RecursionError):
        return MalformedAnswer(f"{NOT_DOCKER}: its JSON nests too deeply to be a Docker API answer")
    text = " ".join(str(c) for c in causes[:3])
    if found(requests.exceptions.SSLError, urllib3.exceptions.SSLError) or "SSL" in text or "certificate" in text:
        return EngineRejected(f"TLS handshake with {url} failed: {_reason(exc)}")
    if "Permission denied" in text:
        return EngineRejected(f"cannot open {url}: permission denied (is the worker's user in the docker group?)")
    if found(http.client.RemoteDisconnected):
        return EngineUnreachable(f"{url} closed the connection without answering")
    if found(http.client.IncompleteRead, urllib3.exceptions.IncompleteRead, requests.exceptions.ChunkedEncodingError):
        return EngineUnreachable("the engine closed the connection before its answer was complete")
    if (garbled := found(http.client.HTTPException)) is not None:
        return MalformedAnswer(f"{NOT_DOCKER}: {url} does not answer in HTTP ({type(garbled).__name__}: {_engine_text(garbled, 120)})")
    # urllib3's NewConnectionError (refused, no such socket) is a ConnectTimeoutError
    # by inheritance only; requests' Timeout covers the real connect and read timeouts.
    if found(requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError) or "timed out" in text.lower():
        return EngineUnreachable(f"{url} did not answer in time: {_reason(exc)}")
    if found(ConnectionResetError, BrokenPipeError) and not found(urllib3.exceptions.NewConnectionError):
        return EngineUnreachable("the engine closed the connection before its answer was complete")
    if isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException | OSError):
        return EngineUnreachable(f"cannot reach {url}: {_reason(exc)}")
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError | IndexError):
        return MalformedAnswer(f"{NOT_DOCKER}: {type(exc).__name__}: {_engine_text(exc, 200)}")
    # Anything else is still the engine's doing as far as this poll can tell; name it.
    return MalformedAnswer(f"reading {url} failed: {type(exc).__name__}: {_engine_text(exc, 200)}")


def _api_error(exc: docker.errors.APIError, url: str) -> EngineError | MalformedAnswer:
    status = exc.status_code or 0
    path = exc.response.request.path_url if exc.response is not None and exc.response.request is not None else ""
    said = f": {_engine_text(exc.explanation, 200)}" if exc.explanation else ""
    what = f"{url} answered {_engine_text(api_path(path), 100)} with {status}"
    if status in (401, 403):
        return EngineRejected(f"{url} refused the request: {status}{said}")
    if status >= 500:
        return EngineUnreachable(f"{what}{said}")
    if status == 404:
        return MalformedAnswer(f"{NOT_DOCKER}: {what} (not found){said}")
    return EngineRejected(f"{what}{said}")


# A time limit of the process running the poll (Celery's soft limit, a terminate) is
# its caller's to handle, not an engine's fault: matched by name, the collector
# imports nothing from the task queue.
_NOT_THE_ENGINES = frozenset({"SoftTimeLimitExceeded", "TimeLimitExceeded", "Terminated", "WorkerLostError"})


@contextlib.contextmanager
def _engine_errors(url: str, budget: Budget) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if any(cls.__name__ in _NOT_THE_ENGINES for cls in type(exc).__mro__):
            raise
        classified = _classify(exc, url, budget)
        if classified is exc:
            raise
        raise classified from exc


# --- connecting ---------------------------------------------------------------------


def _before_deadline(fn: Callable[[], T], budget: Budget, doing: str) -> T:
    """``fn()`` in a helper thread, abandoned at the deadline: for blocking calls that
    take no timeout, like the system resolver."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="posture-resolve", daemon=True)
    thread.start()
    thread.join(budget.remaining())
    if thread.is_alive():
        budget.expire()
        raise DeadlineExceeded(f"{doing} did not finish within the {budget.seconds:g} s {budget.name} deadline")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _addresses(target: EngineTarget, budget: Budget, resolver: Resolver) -> list[str]:
    """The checked addresses for a tcp or ssh engine, resolved now, not at registration."""
    url = target.url
    port = url.port or (22 if url.scheme == "ssh" else 2376)
    try:
        if parse_ip(url.host) is not None:  # nothing to look up
            return resolve_and_check(url.host, port, resolver)
        return _before_deadline(lambda: resolve_and_check(url.host, port, resolver), budget, f"resolving {url.host}")
    except ForbiddenAddress as exc:
        raise EngineRejected(str(exc)) from None
    except OSError as exc:
        raise EngineUnreachable(f"cannot resolve {url.host}: {_engine_text(getattr(exc, 'strerror', None) or exc, 200)}") from None


@contextlib.contextmanager
def _ssh_tunnel(target: EngineTarget, workdir: Path, address: str, budget: Budget) -> Iterator[str]:
    """Forward the remote engine socket to a local one with the system ssh client.

    The system client honours ConnectTimeout and BatchMode, pins the host key in a
    per-host known_hosts file (trust on first use), and needs nothing on the remote
    side but sshd and the engine socket. It connects to ``address``, the one the
    address guard checked, and files the host key under the registered name
    (``HostKeyAlias``), so pinning does not depend on what DNS said today.
    """
    url = target.url
    local = workdir / "engine.sock"
    # When the budget ends first, ssh must not give up before it (with a vaguer reason).
    remaining = budget.remaining()
    connect_timeout = max(1, int(target.timeout)) if target.timeout < remaining else math.ceil(remaining) + 1
    cmd = ["ssh", "-N", *ssh_options(target, workdir=workdir, strict="accept-new", connect_timeout=connect_timeout)]
    cmd += ["-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]
    cmd += ["-L", f"{local}:{url.path}", "--", address]
    log.debug("ssh tunnel: %s", shlex.join(cmd))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = min(time.monotonic() + target.timeout + 2, time.monotonic() + budget.remaining())
        while not local.exists():
            if time.monotonic() > deadline and budget.remaining() < 0.1:
                raise budget.exceeded()
            if proc.poll() is not None:
                err = (proc.stderr.read(64 * 1024) if proc.stderr else b"").decode(errors="replace").strip().splitlines()
                message = _engine_text(err[-1]) if err else f"ssh exited with status {proc.returncode}"
                kind = EngineRejected if "denied" in message or "verification failed" in message else EngineUnreachable
                raise kind(f"ssh to {url} failed: {message}")
            if time.monotonic() > deadline:
                raise EngineUnreachable(f"ssh to {url} did not connect within {target.timeout:g}s")
            time.sleep(0.05)
        yield f"unix://{local}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check_certificate(path: Path | None, what: str, now: datetime) -> None:
    """Name an expired or not-yet-valid certificate before the handshake does, vaguely."""
    if path is None:
        return
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise EngineRejected(f"the {what} is not a PEM certificate") from None
    if cert.not_valid_after_utc < now:
        raise EngineRejected(f"the {what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; upload a renewed one")
    if cert.not_valid_before_utc > now:
        raise EngineRejected(f"the {what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def _install(client: docker.APIClient, adapter: EngineAdapter) -> None:
    """Make ``adapter`` the session's only transport.

    The SDK mounts its own adapters for http://, https:// and its unix scheme; with
    them gone, a request for anything but the engine's origin finds no transport.
    """
    for mounted in list(client.adapters.values()):
        if mounted is not adapter:
            mounted.close()
    client.adapters.clear()
    client.mount(adapter.origin + "/", adapter)
    # The worker's environment must not steer engine traffic: requests would let
    # REQUESTS_CA_BUNDLE replace the host's CA and HTTP(S)_PROXY reroute the API.
    client.trust_env = False
    client.max_redirects = 0
    # Docker never compresses its answers; asking for none keeps the size limits honest.
    client.headers["Accept-Encoding"] = "identity"


@contextlib.contextmanager
def open_client(target: EngineTarget, *, budget: Budget, resolver: Resolver = system_resolver) -> Iterator[tuple[docker.APIClient, dict[str, Any]]]:
    """An API client for ``target`` within ``budget``, and its /version answer.

    Never ``docker.from_env()``: it follows the CLI context and environment of
    whoever runs the worker, not the host the operator registered. Raises what the
    library raised; callers classify it (``_engine_errors``).
    """
    url = target.url
    with contextlib.ExitStack() as stack:
        watchdog = stack.enter_context(Watchdog(budget))
        route = Route(budget=budget, watchdog=watchdog, per_read=target.timeout)
        tls: TLSFiles | None = None
        host, port = "localhost", 80
        if url.scheme == "unix":
            route.unix_path = url.path
            origin = "http+docker://localhost"
        elif url.scheme == "ssh":
            address = _addresses(target, budget, resolver)[0]
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="posture-ssh-")))
            route.unix_path = stack.enter_context(_ssh_tunnel(target, workdir, address, budget)).removeprefix("unix://")
            origin = "http+docker://localhost"
        else:
            if not target.uses_tls and not target.insecure:
                raise EngineRejected(f"{url} is plain tcp without TLS; mark the host insecure to poll it anyway")
            route.addresses, route.port = _addresses(target, budget, resolver), url.port or 2376
            host, port = url.host, route.port
            if target.uses_tls:
                now = datetime.now(UTC)
                _check_certificate(target.tls_ca, "CA certificate", now)
                _check_certificate(target.tls_cert, "client certificate", now)
                # Always verify the server against the host's own CA.
                with_key = target.tls_cert is not None and target.tls_key is not None
                tls = TLSFiles(ca=str(target.tls_ca), cert=str(target.tls_cert) if with_key else None, key=str(target.tls_key) if with_key else None)
            origin = f"{'https' if tls else 'http'}://{url.netloc}"
        # Negotiate the API version ourselves (rather than version="auto") so the
        # client is configured before its first request, and the answer is reused.
        client = docker.APIClient(
            base_url=origin if url.scheme == "tcp" else f"unix://{route.unix_path}",
            timeout=target.timeout,
            version=docker.constants.MINIMUM_DOCKER_API_VERSION,
        )
        stack.callback(client.close)
        client.posture_route = route  # what the answers hashed to: _read
        adapter = EngineAdapter(client.base_url, route, host=host, port=port, tls=tls, maxsize=INSPECT_WORKERS + 2, shown_as=str(url))
        _install(client, adapter)
        version = client.version(api_version=False)
        if not isinstance(version, dict) or not isinstance(version.get("ApiVersion"), str) or not version.get("ApiVersion"):
            raise MalformedAnswer(f"{NOT_DOCKER}: its /version answer has no ApiVersion")
        client._version = min(version["ApiVersion"], docker.constants.DEFAULT_DOCKER_API_VERSION, key=_version_key)
        if not _version_key(client._version):
            raise MalformedAnswer(f"{NOT_DOCKER}: API version {_engine_text(version['ApiVersion'], 40)!r}")
        yield client, version


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


class _Counter:
    def __init__(self, budget: Budget) -> None:
        self.calls = 1  # /version, read by open_client
        self._lock = threading.Lock()
        self._budget = budget

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._budget.check()  # no new call past the deadline, even one a thread had queued
        with self._lock:
            self.calls += 1
        return fn(*args, **kwargs)


def _listed_id(item: Any, what: str) -> str:
    """The id of one entry of a list answer, checked before it goes into a request path."""
    ident = item.get("Id") if isinstance(item, Mapping) else None
    if not isinstance(ident, str) or not _OBJECT_ID.match(ident):
        raise MalformedAnswer(f"{NOT_DOCKER}: the {what} list holds {_engine_text(repr(item), 80)}, which is not a {what} with an Id")
    return ident


def _unchanged(listed: Mapping[str, Any], previous: Container) -> bool:
    settings = listed.get("NetworkSettings")
    networks = settings.get("Networks") if isinstance(settings, Mapping) else None
    names = sorted(networks) if isinstance(networks, Mapping) else []
    return listed.get("State") == previous.state and names == sorted(a.network for a in previous.attachments)


def _gather(pool: ThreadPoolExecutor, calls: list[Callable[[], T]], budget: Budget) -> list[T]:
    """Run ``calls`` on ``pool``; their results in order, or the first failure, or
    ``DeadlineExceeded`` at the deadline — never a wait past it."""
    futures: list[Future[T]] = [pool.submit(c) for c in calls]
    _done, pending = wait(futures, timeout=budget.remaining(), return_when=FIRST_EXCEPTION)
    failed = next((f for f in futures if f.done() and f.exception() is not None), None)
    if failed is not None:
        raise failed.exception()  # type: ignore[misc]
    if pending:
        budget.expire()
        raise budget.exceeded()
    return [f.result() for f in futures]


def _read(
    client: docker.APIClient,
    version: dict[str, Any],
    previous: HostSnapshot | Callable[[], HostSnapshot | None] | None,
    connection: Connection,
    workers: int,
    budget: Budget,
    unchanged_since: str,
    host_listeners: bool = False,
) -> HostSnapshot | Unchanged:
    call = _Counter(budget)

    def inspect(fn: Callable[[str], Any], ident: str) -> Any:
        try:
            return call(fn, ident)
        except docker.errors.NotFound:
            return None  # removed between the list and the inspect: it is gone

    info = call(client.info)
    listed_networks = call(client.networks)
    listed_containers = call(client.containers, all=True)
    if not isinstance(listed_networks, list) or not isinstance(listed_containers, list):
        raise MalformedAnswer(f"{NOT_DOCKER}: the engine's network or container list is not a list")
    # How we connected is part of the snapshot too (a host switched to TLS, or to reading
    # its listeners, is not the same snapshot however the engine answers).
    fingerprint = hashlib.sha256(f"{client.posture_route.answers.hexdigest()}|{connection!r}|{host_listeners}".encode()).hexdigest()
    if unchanged_since and fingerprint == unchanged_since:
        return Unchanged(answers=fingerprint, api_calls=call.calls, containers=len(listed_containers))
    network_ids = [_listed_id(n, "network") for n in listed_networks]
    if callable(previous):
        previous = previous()
    known = {c.id: c for c in previous.containers} if previous else {}
    reused: list[Container] = []
    to_inspect: list[str] = []
    for item in listed_containers:
        ident = _listed_id(item, "container")
        prev = known.get(ident)
        if prev is not None and _unchanged(item, prev):
            reused.append(prev)
        else:
            to_inspect.append(ident)
    # Not ``with ThreadPoolExecutor``: its exit waits for every thread, deadline or not.
    # Threads still blocked when this returns are freed by the watchdog, which shuts
    # their connections when open_client exits.
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inspect")
    try:
        calls = [lambda n=n: inspect(client.inspect_network, n) for n in network_ids]
        calls += [lambda c=c: inspect(client.inspect_container, c) for c in to_inspect]
        answers = _gather(pool, calls, budget)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    networks = [n for n in answers[: len(network_ids)] if n]
    inspected = [c for c in answers[len(network_ids) :] if c]
    return build_snapshot(
        collected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        connection=connection,
        version=version,
        info=info,
        networks=networks,
        containers=[*reused, *inspected],
        api_calls=call.calls,
        inspects_reused=len(reused),
        answers=fingerprint,
    )


def collect(
    target: EngineTarget,
    previous: HostSnapshot | Callable[[], HostSnapshot | None] | None = None,
    *,
    budget: Budget | None = None,
    workers: int = INSPECT_WORKERS,
    resolver: Resolver = system_resolver,
    unchanged_since: str = "",
) -> HostSnapshot | Unchanged:
    """Read one engine within ``budget`` (by default ``DEFAULT_POLL_SECONDS`` and the
    default size limits, counted from this call).

    ``previous`` (or a function that loads it, called only if needed) lets unchanged
    containers skip their inspect. ``unchanged_since``: the ``answers`` of the previous
    snapshot; when the list answers hash the same, ``Unchanged`` is returned after the
    list calls (never for a host whose listeners are read: those are not in the lists).
    Without it, a ``HostSnapshot`` always.

    Raises only ``EngineError`` subclasses or ``MalformedAnswer``, with a message a
    Viewer can read and ``transient`` set for what is worth a retry.
    """
    budget = budget or Budget(DEFAULT_POLL_SECONDS)
    url = target.url
    connection = Connection(scheme=url.scheme, address=str(url), tls=target.uses_tls, client_cert=bool(target.tls_cert))
    since = "" if target.host_listeners else unchanged_since
    with _engine_errors(str(url), budget), open_client(target, budget=budget, resolver=resolver) as (client, version):
        read = _read(client, version, previous, connection, workers, budget, since, target.host_listeners)
        # The host around the engine, when opted in; never raises.
        return read if isinstance(read, Unchanged) else hostio.observe(target, read)


def probe(target: EngineTarget, *, budget: Budget | None = None, resolver: Resolver = system_resolver) -> str:
    """Connect and read ``/version``, for "test connection", within ``budget`` (by default
    ``Budget.for_probe()``). Raises ``EngineError`` or ``MalformedAnswer``."""
    budget = budget or Budget.for_probe()
    with _engine_errors(str(target.url), budget), open_client(target, budget=budget, resolver=resolver) as (_client, version):
        fields = [_engine_text(version.get(k) or "?", 40) for k in ("Version", "ApiVersion", "Os", "Arch")]
        return "Docker {} (API {}, {}/{})".format(*fields)


@contextlib.contextmanager
def ssh_tunnel(target: EngineTarget, workdir: Path, *, resolver: Resolver = system_resolver) -> Iterator[str]:
    """The tunnel polls use, for other clients of an ssh engine (the event watcher): the
    same command, options, pinned host keys and checked address. Only setting it up is
    bounded (a connection test's budget); the tunnel then lives as long as the caller.
    Yields ``unix://`` + the local socket."""
    budget = Budget.for_probe(target.timeout + 2)
    with contextlib.ExitStack() as stack:
        with _engine_errors(str(target.url), budget):
            address = _addresses(target, budget, resolver)[0]
            url = stack.enter_context(_ssh_tunnel(target, workdir, address, budget))
        yield url
