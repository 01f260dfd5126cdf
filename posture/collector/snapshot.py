"""What Posture saw on one Docker engine at one moment.

Frozen dataclasses with a JSON round-trip, so a snapshot can be stored, recorded as a
test fixture and fed back to the rules without an engine. Mappings are read-only
(``MappingProxyType``) so a snapshot cannot be changed after the collector built it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

SCHEMA_VERSION = 1


def frozen_map(values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(sorted((values or {}).items())))


@dataclass(frozen=True)
class PortBinding:
    """One published port as configured (``HostConfig.PortBindings``).

    ``host_ip`` is what the operator asked for; an empty value means every interface,
    IPv4 and IPv6 alike, which is how the engine treats it.
    ``host_port`` is None when the engine picks an ephemeral port.
    """

    container_port: int
    protocol: str
    host_ip: str = ""
    host_port: int | None = None

    @property
    def all_interfaces(self) -> bool:
        return self.host_ip in ("", "0.0.0.0", "::", "[::]")

    @property
    def spec(self) -> str:
        """The ``-p`` argument as the operator wrote it (or would have)."""
        ip = self.host_ip
        if ":" in ip and not ip.startswith("["):
            ip = f"[{ip}]"
        host = f"{ip}:" if ip else ""
        port = "" if self.host_port is None else str(self.host_port)
        proto = "" if self.protocol == "tcp" else f"/{self.protocol}"
        return f"{host}{port}:{self.container_port}{proto}"


@dataclass(frozen=True)
class Mount:
    type: str
    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True)
class Device:
    host_path: str
    container_path: str
    permissions: str = "rwm"


@dataclass(frozen=True)
class Attachment:
    """A container's endpoint on a network."""

    network: str
    network_id: str = ""
    ip_address: str = ""
    ipv6_address: str = ""


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str = ""
    state: str = ""
    created: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    network_mode: str = "default"
    attachments: tuple[Attachment, ...] = ()
    port_bindings: tuple[PortBinding, ...] = ()
    # Ports actually bound right now (NetworkSettings.Ports); empty when not running.
    bound_ports: tuple[PortBinding, ...] = ()
    publish_all_ports: bool = False
    exposed_ports: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    userns_mode: str = ""
    mounts: tuple[Mount, ...] = ()
    devices: tuple[Device, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    extra_hosts: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    # What the collector cut to keep the snapshot bounded ("labels: kept 256 of 1456").
    truncated: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")

    @property
    def compose_project(self) -> str:
        return self.labels.get("com.docker.compose.project", "")

    @property
    def compose_service(self) -> str:
        return self.labels.get("com.docker.compose.service", "")

    @property
    def subject_key(self) -> str:
        """Identity that survives re-creation: never the container id.

        Compose project/service when labelled (with the replica number past the
        first, so scaled services stay apart), else the container name.
        """
        if self.compose_project and self.compose_service:
            key = f"{self.compose_project}/{self.compose_service}"
            number = self.labels.get("com.docker.compose.container-number", "1")
            return key if number in ("", "1") else f"{key}/{number}"
        return self.name


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str = ""
    scope: str = "local"
    internal: bool = False
    enable_ipv6: bool = False
    attachable: bool = False
    ingress: bool = False
    options: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    subnets: tuple[str, ...] = ()
    # The bridge's own addresses on the host (IPAM gateways): how containers reach host services.
    gateways: tuple[str, ...] = ()
    # Names of the containers attached, as the engine reports them.
    containers: tuple[str, ...] = ()
    truncated: tuple[str, ...] = ()

    @property
    def is_default_bridge(self) -> bool:
        # The default bridge is the network *named* bridge; its Linux interface may
        # be anything (--bridge), so docker0 is no way to recognise it.
        return self.name == "bridge" and self.driver == "bridge"

    @property
    def icc_enabled(self) -> bool:
        return self.options.get("com.docker.network.bridge.enable_icc", "true") != "false"

    @property
    def encrypted(self) -> bool:
        return "encrypted" in self.options


@dataclass(frozen=True)
class Connection:
    """How Posture reached the engine: part of the evidence for daemon rules."""

    scheme: str  # unix, tcp, ssh
    address: str = ""
    tls: bool = False
    client_cert: bool = False


@dataclass(frozen=True)
class Engine:
    name: str = ""
    server_version: str = ""
    api_version: str = ""
    os: str = ""
    kernel_version: str = ""
    operating_system: str = ""
    security_options: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    swarm_state: str = "inactive"
    swarm_manager: bool = False
    authorization_plugins: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    live_restore: bool = False
    truncated: tuple[str, ...] = ()

    @property
    def rootless(self) -> bool:
        return any(opt.startswith("name=rootless") for opt in self.security_options)

    @property
    def userns_remap(self) -> bool:
        return any(opt.startswith("name=userns") for opt in self.security_options)


@dataclass(frozen=True)
class Listener:
    """A socket listening on the host itself (not in a container's namespace).

    ``address`` is what the socket is bound to: ``0.0.0.0``, ``::`` or ``*`` for every
    address, ``127.0.0.1`` or ``::1`` for loopback, or one interface address.
    """

    address: str
    port: int
    protocol: str  # tcp, udp
    process: str = ""

    @property
    def endpoint(self) -> str:
        """``ADDRESS:PORT``, IPv6 in brackets: how findings name a listener."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class FirewallRule:
    """One host firewall rule as printed, with the parts the rules reason about."""

    chain: str
    text: str
    action: str  # accept, drop, reject, return, jump, dnat, other
    protocol: str = ""
    ports: tuple[str, ...] = ()  # destination ports ("5432", "8000-8010"); empty is any
    orig_ports: tuple[str, ...] = ()  # conntrack original destination ports (before DNAT)
    source: str = ""  # "10.0.0.0/8", "!10.0.0.0/8"; empty is any
    destination: str = ""
    in_interface: str = ""  # "eth0", "!docker0"; empty is any
    target: str = ""  # the chain jumped to, or the DNAT destination
    established_only: bool = False  # matches only established/related traffic
    other_conditions: bool = False  # narrowed by matches Posture does not model (rate, addrtype...)

    @property
    def unconditional(self) -> bool:
        return not (
            self.protocol
            or self.ports
            or self.orig_ports
            or self.source
            or self.destination
            or self.in_interface
            or self.established_only
            or self.other_conditions
        )


@dataclass(frozen=True)
class Firewall:
    """What the host firewall means to do with new inbound traffic, and what Docker forwards."""

    source: str  # the commands read: "iptables-save", "nft list ruleset", or both
    frontends: tuple[str, ...] = ()  # ufw, firewalld
    input_default_deny: bool = False
    input_policy: str = ""  # the policy of INPUT (or of the input hook chain that denies)
    input_deny_by: str = ""  # what denies by default: "policy DROP of INPUT" or the final rule
    input_allows: tuple[FirewallRule, ...] = ()  # accept rules for new inbound traffic
    docker_chains: bool = False  # the engine manages iptables here (DOCKER chains exist)
    docker_forwards: tuple[FirewallRule, ...] = ()  # DNAT rules of Docker's nat chain
    docker_user: tuple[FirewallRule, ...] = ()  # DOCKER-USER, which Docker leaves to the operator


@dataclass(frozen=True)
class HostState:
    """The host around the engine, read outside the Engine API when the operator opts in.

    An empty error with no listeners means the host listens on nothing we could see;
    a non-empty error means we could not look, and the rules say so instead of guessing.
    """

    listeners: tuple[Listener, ...] = ()
    listeners_source: str = ""  # "ss -Hltnup", "/proc/net"
    listeners_error: str = ""
    firewall: Firewall | None = None
    firewall_error: str = ""


@dataclass(frozen=True)
class HostSnapshot:
    collected_at: str
    connection: Connection
    engine: Engine
    networks: tuple[Network, ...] = ()
    containers: tuple[Container, ...] = ()
    # None when host listeners are not read for this host (the default: opt-in).
    host: HostState | None = None
    # Cost of the collection, for the poll record; not part of the digest.
    api_calls: int = 0
    inspects_reused: int = 0
    # A hash of the engine's raw list answers this was read from (``engine.collect``):
    # the same answers next time mean the same snapshot, without reading further.
    answers: str = ""
    schema: int = SCHEMA_VERSION

    def container(self, id_or_name: str) -> Container | None:
        for c in self.containers:
            if c.id == id_or_name or c.name == id_or_name or c.id.startswith(id_or_name):
                return c
        return None

    def network(self, name: str) -> Network | None:
        return next((n for n in self.networks if n.name == name or n.id == name), None)

    def to_dict(self) -> dict[str, Any]:
        return _encode(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostSnapshot:
        return _decode(cls, data)

    @classmethod
    def from_json(cls, text: str) -> HostSnapshot:
        return cls.from_dict(json.loads(text))

    def digest(self) -> str:
        """Hash of what the engine runs, leaving out when and how cheaply we looked.
        Computed once per snapshot (it is immutable)."""
        if "_digest" not in self.__dict__:
            data = self.to_dict()
            for volatile in ("collected_at", "api_calls", "inspects_reused", "answers"):
                data.pop(volatile)
            data["containers"] = [{k: v for k, v in c.items() if k != "state"} | {"running": c["state"] == "running"} for c in data["containers"]]
            self.__dict__["_digest"] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        return self.__dict__["_digest"]


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner[0], value)
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(tp)
        return tuple(_decode(item, v) for v in value)
    if origin is Mapping or tp is Mapping:
        return frozen_map(value)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{tp.__name__}: unknown fields {sorted(unknown)}")
        return tp(**{k: _decode(hints[k], v) for k, v in value.items()})
    return value


@dataclass(frozen=True)
class Unchanged:
    """What ``engine.collect`` returns when the engine's list answers are byte for byte
    those the previous snapshot was read from (``answers``): the snapshot is the same,
    and nothing more was read."""

    answers: str
    api_calls: int
    containers: int
    inspects_reused: int = 0
