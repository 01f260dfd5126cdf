"""Engine URLs are operator input: one parser, clear errors, no metadata endpoints."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .address import ForbiddenAddress, check_ip, parse_ip

_FORBIDDEN_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$")
DEFAULT_REMOTE_SOCKET = "/var/run/docker.sock"


class InvalidEngineURL(ValueError):
    pass


@dataclass(frozen=True)
class EngineURL:
    scheme: str  # unix, tcp, ssh
    host: str = ""
    port: int | None = None
    path: str = ""
    user: str = ""

    @property
    def netloc(self) -> str:
        """``host:port``, with IPv6 literals in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        if self.scheme == "ssh":
            user = f"{self.user}@" if self.user else ""
            path = "" if self.path in ("", DEFAULT_REMOTE_SOCKET) else self.path
            return f"ssh://{user}{self.netloc}{path}"
        return f"tcp://{self.netloc}"


def _check_host(host: str) -> str:
    """The host as Posture will use it: an IP address in its one canonical spelling
    (whatever legacy form the operator wrote), or a lower-case name. Names are checked
    again, with every address they resolve to, each time a poll connects."""
    if not host:
        raise InvalidEngineURL("the URL names no host")
    ip = parse_ip(host)
    if ip is None:
        if not _HOSTNAME.match(host):
            raise InvalidEngineURL(f"{host!r} is neither an IP address nor a valid host name")
        if host.lower().rstrip(".") in _FORBIDDEN_NAMES:
            raise InvalidEngineURL(f"{host!r} is a cloud metadata service, not a Docker engine")
        return host.lower()
    try:
        return str(check_ip(ip, host))
    except ForbiddenAddress as exc:
        raise InvalidEngineURL(str(exc)) from None


def parse_engine_url(url: str) -> EngineURL:
    """Parse ``unix:///path``, ``tcp://host:port`` or ``ssh://[user@]host[:port][/socket]``.

    Raises ``InvalidEngineURL`` with a sentence an operator can act on.
    """
    url = (url or "").strip()
    if not url:
        raise InvalidEngineURL("the engine URL is empty")
    if any(ch.isspace() for ch in url):
        raise InvalidEngineURL("the engine URL contains white space")
    if "://" not in url:
        if url.startswith("/"):
            raise InvalidEngineURL(f"a socket path needs the unix:// scheme: unix://{url}")
        raise InvalidEngineURL("the engine URL needs a scheme: unix://, tcp:// or ssh://")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        raise InvalidEngineURL(f"use tcp:// rather than {scheme}://; TLS is chosen by giving certificates")
    if scheme not in ("unix", "tcp", "ssh"):
        raise InvalidEngineURL(f"unsupported scheme {scheme!r}: use unix://, tcp:// or ssh://")
    if parts.query or parts.fragment:
        raise InvalidEngineURL("the engine URL may not carry a query or fragment")
    if scheme == "unix":
        if parts.netloc:
            raise InvalidEngineURL("a unix URL has three slashes and an absolute path: unix:///var/run/docker.sock")
        if not parts.path.startswith("/") or ".." in Path(parts.path).parts:
            raise InvalidEngineURL("a unix socket path must be absolute")
        return EngineURL(scheme="unix", path=parts.path)
    try:
        port = parts.port
    except ValueError:
        raise InvalidEngineURL("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise InvalidEngineURL("the port must be a number from 1 to 65535")
    host = _check_host(parts.hostname or "")
    if scheme == "tcp":
        if parts.username or parts.password:
            raise InvalidEngineURL("a tcp URL carries no user; authenticate with TLS client certificates")
        if parts.path not in ("", "/"):
            raise InvalidEngineURL("a tcp URL has no path")
        if port is None:
            raise InvalidEngineURL("a tcp URL needs a port, usually 2376 (TLS) or 2375 (plain)")
        return EngineURL(scheme="tcp", host=host, port=port)
    if parts.password:
        raise InvalidEngineURL("never put a password in an ssh URL; upload a key instead")
    user = parts.username or ""
    if user and not _USER.match(user):
        raise InvalidEngineURL(f"{user!r} is not a valid ssh user name")
    path = parts.path or DEFAULT_REMOTE_SOCKET
    if not path.startswith("/"):
        raise InvalidEngineURL("the remote socket path must be absolute")
    return EngineURL(scheme="ssh", host=host, port=port, user=user, path=path)


@dataclass(frozen=True)
class EngineTarget:
    """Everything needed to reach one engine; credentials as files the worker alone can read."""

    url: EngineURL
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ssh_key: Path | None = None
    ssh_known_hosts: Path | None = None
    insecure: bool = False
    timeout: float = 10.0
    # Also read the host's listening sockets (and, over SSH, its firewall): see hostio.
    host_listeners: bool = False

    @property
    def uses_tls(self) -> bool:
        return self.url.scheme == "tcp" and self.tls_ca is not None
