"""The one seam to the Docker Engine API: the only module that imports ``docker``.

``collect(target, previous)`` reads one engine and returns a ``HostSnapshot``.
Every call has a timeout; container inspects run on a bounded pool and are skipped
for containers whose id, state and networks are unchanged since ``previous``
(a container's configuration cannot change without re-creating it).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.tls
import requests.exceptions
from cryptography import x509

from .parse import MalformedAnswer, build_snapshot
from .snapshot import Connection, Container, HostSnapshot
from .target import EngineTarget

log = logging.getLogger(__name__)
T = TypeVar("T")
INSPECT_WORKERS = 8


class EngineError(Exception):
    """The engine could not be read. ``transient`` errors are worth a retry."""

    transient = False


class EngineUnreachable(EngineError):
    transient = True


class EngineRejected(EngineError):
    """TLS, SSH or authorization refused us: retrying will not help."""


def _reason(exc: BaseException) -> str:
    """The innermost useful sentence of a requests/urllib3/docker error chain."""
    text = str(exc)
    for marker in ("certificate has expired", "certificate verify failed", "alert certificate expired", "alert bad certificate", "alert unknown ca"):
        if marker in text:
            detail = text[text.index(marker) :].split("'")[0]
            return re.sub(r"\s*\(_ssl\.c:\d+\)?.*$", "", detail).strip(" :)")
    for marker in ("Connection refused", "No such file or directory", "Permission denied", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _classify(exc: BaseException, url: str) -> EngineError:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError) or "SSL" in text or "certificate" in text:
        return EngineRejected(f"TLS handshake with {url} failed: {_reason(exc)}")
    if isinstance(exc, docker.errors.APIError) and exc.status_code in (401, 403):
        return EngineRejected(f"{url} refused the request: {exc.explanation or exc}")
    if "Permission denied" in text:
        return EngineRejected(f"cannot open {url}: permission denied (is the worker's user in the docker group?)")
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in text.lower():
        return EngineUnreachable(f"{url} did not answer in time: {_reason(exc)}")
    return EngineUnreachable(f"cannot reach {url}: {_reason(exc)}")


@contextlib.contextmanager
def _ssh_tunnel(target: EngineTarget, workdir: Path) -> Iterator[str]:
    """Forward the remote engine socket to a local one with the system ssh client.

    The system client honours ConnectTimeout and BatchMode, pins the host key in a
    per-host known_hosts file (trust on first use), and needs nothing on the remote
    side but sshd and the engine socket.
    """
    url = target.url
    local = workdir / "engine.sock"
    cmd = ["ssh", "-N", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(target.timeout))}"]
    cmd += ["-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]
    cmd += ["-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={target.ssh_known_hosts or workdir / 'known_hosts'}"]
    if target.ssh_key:
        cmd += ["-o", "IdentitiesOnly=yes", "-i", str(target.ssh_key)]
    if url.port:
        cmd += ["-p", str(url.port)]
    if url.user:
        cmd += ["-l", url.user]
    cmd += ["-L", f"{local}:{url.path}", "--", url.host]
    log.debug("ssh tunnel: %s", shlex.join(cmd))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + target.timeout + 2
        while not local.exists():
            if proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip().splitlines()
                message = err[-1] if err else f"ssh exited with status {proc.returncode}"
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


@contextlib.contextmanager
def open_client(target: EngineTarget) -> Iterator[tuple[docker.APIClient, dict[str, Any]]]:
    """An API client for ``target`` with a timeout on every call, and its /version answer.

    Never ``docker.from_env()``: it follows the CLI context and environment of
    whoever runs the worker, not the host the operator registered.
    """
    url = target.url
    with contextlib.ExitStack() as stack:
        tls: docker.tls.TLSConfig | bool = False
        if url.scheme == "unix":
            base_url = f"unix://{url.path}"
        elif url.scheme == "ssh":
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="posture-ssh-")))
            base_url = stack.enter_context(_ssh_tunnel(target, workdir))
        elif target.uses_tls:
            now = datetime.now(UTC)
            _check_certificate(target.tls_ca, "CA certificate", now)
            _check_certificate(target.tls_cert, "client certificate", now)
            # Always verify the server against the host's own CA.
            client_cert = (str(target.tls_cert), str(target.tls_key)) if target.tls_cert and target.tls_key else None
            tls = docker.tls.TLSConfig(client_cert=client_cert, ca_cert=str(target.tls_ca), verify=True)
            base_url = f"https://{url.netloc}"
        else:
            if not target.insecure:
                raise EngineRejected(f"{url} is plain tcp without TLS; mark the host insecure to poll it anyway")
            base_url = f"http://{url.netloc}"
        try:
            # Negotiate the API version ourselves (rather than version="auto") so the
            # client is configured before its first request, and the answer is reused.
            client = docker.APIClient(
                base_url=base_url, tls=tls, timeout=target.timeout, version=docker.constants.MINIMUM_DOCKER_API_VERSION, max_pool_size=INSPECT_WORKERS + 2
            )
            # The worker's environment must not steer engine traffic: requests would let
            # REQUESTS_CA_BUNDLE replace the host's CA and HTTP(S)_PROXY reroute the API.
            client.trust_env = False
            stack.callback(client.close)
            version = client.version(api_version=False)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise _classify(exc, str(url)) from exc
        except ValueError as exc:
            raise MalformedAnswer(f"{url} answered /version with something that is not the Docker Engine API: {exc}") from exc
        if not isinstance(version, dict) or not version.get("ApiVersion"):
            raise MalformedAnswer(f"{url} answered /version without an ApiVersion")
        client._version = min(str(version["ApiVersion"]), docker.constants.DEFAULT_DOCKER_API_VERSION, key=_version_key)
        yield client, version


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


class _Counter:
    def __init__(self) -> None:
        self.calls = 1  # /version, read by open_client
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            self.calls += 1
        return fn(*args, **kwargs)


def _unchanged(listed: Mapping[str, Any], previous: Container) -> bool:
    networks = (listed.get("NetworkSettings") or {}).get("Networks") or {}
    return listed.get("State") == previous.state and sorted(networks) == sorted(a.network for a in previous.attachments)


def _read(client: docker.APIClient, version: dict[str, Any], previous: HostSnapshot | None, connection: Connection, workers: int) -> HostSnapshot:
    call = _Counter()

    def inspect(fn: Callable[[str], Any], ident: str) -> Any:
        try:
            return call(fn, ident)
        except docker.errors.NotFound:
            return None  # removed between the list and the inspect: it is gone

    info = call(client.info)
    listed_networks = call(client.networks)
    listed_containers = call(client.containers, all=True)
    if not isinstance(listed_networks, list) or not isinstance(listed_containers, list):
        raise MalformedAnswer("the engine's network or container list is not a list")
    known = {c.id: c for c in previous.containers} if previous else {}
    reused: list[Container] = []
    to_inspect: list[str] = []
    for item in listed_containers:
        prev = known.get(item.get("Id", ""))
        if prev is not None and _unchanged(item, prev):
            reused.append(prev)
        else:
            to_inspect.append(item["Id"])
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inspect") as pool:
        networks = pool.map(lambda n: inspect(client.inspect_network, n["Id"]), listed_networks)
        inspected = pool.map(lambda cid: inspect(client.inspect_container, cid), to_inspect)
        networks, inspected = [n for n in networks if n], [c for c in inspected if c]
    return build_snapshot(
        collected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        connection=connection,
        version=version,
        info=info,
        networks=networks,
        containers=[*reused, *inspected],
        api_calls=call.calls,
        inspects_reused=len(reused),
    )


def collect(target: EngineTarget, previous: HostSnapshot | None = None, *, workers: int = INSPECT_WORKERS) -> HostSnapshot:
    """Read one engine. Raises ``EngineError`` or ``MalformedAnswer`` with a clear message."""
    url = target.url
    connection = Connection(scheme=url.scheme, address=str(url), tls=target.uses_tls, client_cert=bool(target.tls_cert))
    with open_client(target) as (client, version):
        try:
            return _read(client, version, previous, connection, workers)
        except MalformedAnswer:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            # Includes requests' JSONDecodeError: an answer that is not JSON at all.
            raise MalformedAnswer(f"{url} answered with something that is not the Docker Engine API: {exc}") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise _classify(exc, str(url)) from exc


def probe(target: EngineTarget) -> str:
    """Connect and read ``/version``: for "test connection". Raises ``EngineError`` or ``MalformedAnswer``."""
    with open_client(target) as (_client, version):
        return f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}, {version.get('Os', '?')}/{version.get('Arch', '?')})"


@contextlib.contextmanager
def ssh_tunnel(target: EngineTarget, workdir: Path) -> Iterator[str]:
    """The tunnel polls use, for other clients of an ssh engine (the event watcher):
    the same command, options and pinned host keys. Yields ``unix://`` + the local socket."""
    with _ssh_tunnel(target, workdir) as url:
        yield url
