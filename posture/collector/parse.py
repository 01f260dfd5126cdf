"""Engine JSON to snapshot types: pure functions, tested on recorded engine answers.

Every reader tolerates missing or null fields (engines of different ages omit
different ones) and raises ``MalformedAnswer`` only when the answer's shape is wrong
in a way that would make the snapshot lie.

What a snapshot keeps is bounded: the engine decides how much it sends, these caps
decide how much of it is stored on every poll. Strings past their cap keep their
start and a visible mark (``…[truncated 20 MiB]``); collections past theirs keep
their first items (the ones Posture reads first) and a note in ``truncated``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .errors import MalformedAnswer
from .snapshot import (
    Attachment,
    Connection,
    Container,
    Device,
    Engine,
    HostSnapshot,
    Mount,
    Network,
    PortBinding,
    frozen_map,
)
from .text import truncate

__all__ = ["MalformedAnswer", "build_snapshot", "parse_container", "parse_engine", "parse_network"]

# The engine trusts loopback registries by default; only what an operator added counts.
DEFAULT_INSECURE_CIDRS = frozenset({"127.0.0.0/8", "::1/128"})


MAX_ID = 128  # object ids: 64 hex characters on every engine
MAX_TEXT = 1024  # one name, image, path, mode or other short string
MAX_LABEL_KEY = 256
MAX_LABEL_VALUE = 4096  # one label, sysctl or option value
MAX_LABELS = 256  # labels (sysctls, options) kept per object
MAX_LABEL_BYTES = 64 * 1024  # their keys and values together, per object
MAX_ITEMS = 256  # mounts, devices, attachments, capabilities, extra hosts, warnings...
MAX_PORTS = 4096  # port bindings per map: a published range of a thousand ports is real
MAX_MEMBERS = 10_000  # container names listed on one network
# Labels Posture reads (subject keys come from compose's) are kept before any other.
READ_LABELS = ("com.docker.compose.",)


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """An engine value as a string of at most ``limit`` characters ("" for null)."""
    return truncate("" if value is None else str(value), limit)


def cap_items(values: Iterable[Any], what: str, limit: int = MAX_ITEMS) -> tuple[tuple[Any, ...], str | None]:
    """The first ``limit`` items, and a note of how many there were if any were dropped."""
    items = list(values)
    if len(items) <= limit:
        return tuple(items), None
    return tuple(items[:limit]), f"{what}: kept {limit} of {len(items)}"


def cap_map(
    values: Mapping[str, Any],
    what: str,
    *,
    max_items: int = MAX_LABELS,
    max_key: int = MAX_LABEL_KEY,
    max_value: int = MAX_LABEL_VALUE,
    max_bytes: int = MAX_LABEL_BYTES,
    first: tuple[str, ...] = READ_LABELS,
) -> tuple[dict[str, str], str | None]:
    """A string map within its caps: each key and value truncated with a mark, at most
    ``max_items`` entries and ``max_bytes`` characters together, keys starting with
    ``first`` kept before the rest; a note when entries were dropped."""
    ordered = sorted(values.items(), key=lambda kv: (not str(kv[0]).startswith(first), str(kv[0])))
    kept: dict[str, str] = {}
    used = 0
    for key, value in ordered:
        k, v = text(key, max_key), text(value, max_value)
        if len(kept) < max_items and used + len(k) + len(v) <= max_bytes:
            kept[k] = v
            used += len(k) + len(v)
    dropped = len(values) - len(kept)
    return kept, (f"{what}: kept {len(kept)} of {len(values)}" if dropped > 0 else None)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedAnswer(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedAnswer(f"{what}: expected a list, got {type(value).__name__}")
    return value


class _Notes(list[str]):
    """What a reader cut, gathered for the object's ``truncated`` field."""

    def items(self, values: Iterable[Any], what: str, limit: int = MAX_ITEMS) -> tuple[Any, ...]:
        kept, note = cap_items(values, what, limit)
        if note:
            self.append(note)
        return kept

    def map(self, values: Mapping[str, Any], what: str) -> Mapping[str, str]:
        kept, note = cap_map(values, what)
        if note:
            self.append(note)
        return frozen_map(kept)

    def strings(self, value: Any, what: str, limit: int = MAX_ITEMS) -> tuple[str, ...]:
        values = _list(value, what)
        if len(values) > limit:
            self.append(f"{what}: kept {limit} of {len(values)}")
        return tuple(text(v) for v in values[:limit])


def parse_port_key(key: str) -> tuple[int, str]:
    """``"5432/tcp"`` → ``(5432, "tcp")``; a bare number is TCP."""
    port, _, proto = str(key).partition("/")
    try:
        number = int(port)
    except ValueError:
        raise MalformedAnswer(f"port {text(key, 40)!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise MalformedAnswer(f"port {number} is out of range")
    return number, text(proto, 16) or "tcp"


def _bindings(ports: Any, what: str) -> Iterator[PortBinding]:
    for key, entries in _mapping(ports, what).items():
        container_port, proto = parse_port_key(key)
        for entry in _list(entries, f"{what}[{text(key, 40)}]"):
            entry = _mapping(entry, f"{what}[{text(key, 40)}]")
            host_port = text(entry.get("HostPort") or "", 40).strip()
            if host_port and not host_port.split("-")[0].isdigit():
                raise MalformedAnswer(f"{what}[{text(key, 40)}]: host port {host_port!r}")
            yield PortBinding(
                container_port=container_port,
                protocol=proto,
                host_ip=text(entry.get("HostIp") or "", 64),
                # A range ("8000-8010") is recorded by its first port.
                host_port=int(host_port.split("-")[0]) if host_port else None,
            )


def parse_port_map(ports: Any, what: str, notes: list[str] | None = None) -> tuple[PortBinding, ...]:
    """``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`` → bindings, sorted; at most
    ``MAX_PORTS`` of them (reading stops there: an answer can hold half a million)."""
    bindings = list(itertools.islice(_bindings(ports, what), MAX_PORTS + 1))
    if len(bindings) > MAX_PORTS:
        bindings = bindings[:MAX_PORTS]
        if notes is not None:
            notes.append(f"{what}: kept the first {MAX_PORTS}")
    return tuple(sorted(bindings, key=lambda b: (b.container_port, b.protocol, b.host_ip)))


def parse_container(data: Mapping[str, Any]) -> Container:
    """One ``GET /containers/{id}/json`` answer, within the caps."""
    data = _mapping(data, "container")
    if not data.get("Id"):
        raise MalformedAnswer("container: no Id")
    config = _mapping(data.get("Config"), "Config")
    host = _mapping(data.get("HostConfig"), "HostConfig")
    settings = _mapping(data.get("NetworkSettings"), "NetworkSettings")
    state = _mapping(data.get("State"), "State")
    notes = _Notes()
    endpoints = notes.items(sorted(_mapping(settings.get("Networks"), "Networks").items()), "networks")
    attachments = tuple(
        Attachment(
            network=text(name),
            network_id=text(_mapping(ep, "Networks[]").get("NetworkID"), MAX_ID),
            ip_address=text(_mapping(ep, "Networks[]").get("IPAddress"), 64),
            ipv6_address=text(_mapping(ep, "Networks[]").get("GlobalIPv6Address"), 64),
        )
        for name, ep in endpoints
    )
    mounts = tuple(
        Mount(
            type=text(m.get("Type") or "bind", 32),
            source=text(m.get("Source") or m.get("Name") or ""),
            destination=text(m.get("Destination") or ""),
            read_only=not m.get("RW", True),
        )
        for m in (_mapping(m, "Mounts[]") for m in notes.items(_list(data.get("Mounts"), "Mounts"), "mounts"))
    )
    devices = tuple(
        Device(
            host_path=text(d.get("PathOnHost") or ""),
            container_path=text(d.get("PathInContainer") or ""),
            permissions=text(d.get("CgroupPermissions") or "rwm", 16),
        )
        for d in (_mapping(d, "Devices[]") for d in notes.items(_list(host.get("Devices"), "Devices"), "devices"))
    )
    return Container(
        id=text(data["Id"], MAX_ID),
        name=text(data.get("Name") or "").lstrip("/"),
        image=text(config.get("Image") or data.get("Image") or ""),
        state=text(state.get("Status") or "", 32),
        created=text(data.get("Created") or "", 64),
        labels=notes.map(_mapping(config.get("Labels"), "Labels"), "labels"),
        network_mode=text(host.get("NetworkMode") or "default"),
        attachments=attachments,
        port_bindings=parse_port_map(host.get("PortBindings"), "HostConfig.PortBindings", notes),
        bound_ports=parse_port_map(settings.get("Ports"), "NetworkSettings.Ports", notes),
        publish_all_ports=bool(host.get("PublishAllPorts")),
        exposed_ports=notes.items(sorted(text(p, 32) for p in _mapping(config.get("ExposedPorts"), "ExposedPorts")), "exposed ports", MAX_PORTS),
        cap_add=notes.strings(host.get("CapAdd"), "CapAdd"),
        cap_drop=notes.strings(host.get("CapDrop"), "CapDrop"),
        privileged=bool(host.get("Privileged")),
        pid_mode=text(host.get("PidMode") or ""),
        ipc_mode=text(host.get("IpcMode") or ""),
        uts_mode=text(host.get("UTSMode") or ""),
        userns_mode=text(host.get("UsernsMode") or ""),
        mounts=mounts,
        devices=devices,
        sysctls=notes.map(_mapping(host.get("Sysctls"), "Sysctls"), "sysctls"),
        extra_hosts=notes.strings(host.get("ExtraHosts"), "ExtraHosts"),
        security_opt=notes.strings(host.get("SecurityOpt"), "SecurityOpt"),
        truncated=tuple(notes),
    )


def parse_network(data: Mapping[str, Any]) -> Network:
    """One ``GET /networks/{id}`` answer, within the caps."""
    data = _mapping(data, "network")
    if not data.get("Id") or not data.get("Name"):
        raise MalformedAnswer("network: no Id or Name")
    notes = _Notes()
    ipam = _mapping(data.get("IPAM"), "IPAM")
    configs = [c for c in _list(ipam.get("Config"), "IPAM.Config") if isinstance(c, Mapping)]
    subnets = notes.items((text(c.get("Subnet"), 64) for c in configs if c.get("Subnet")), "subnets")
    gateways = notes.items((text(c.get("Gateway"), 64) for c in configs if c.get("Gateway")), "gateways")
    members = _mapping(data.get("Containers"), "Containers")
    if len(members) > MAX_MEMBERS:
        notes.append(f"containers: kept {MAX_MEMBERS} of {len(members)}")
    names = sorted(text(_mapping(v, "Containers[]").get("Name") or k) for k, v in itertools.islice(members.items(), MAX_MEMBERS))
    return Network(
        id=text(data["Id"], MAX_ID),
        name=text(data["Name"]),
        driver=text(data.get("Driver") or "", 64),
        scope=text(data.get("Scope") or "local", 32),
        internal=bool(data.get("Internal")),
        enable_ipv6=bool(data.get("EnableIPv6")),
        attachable=bool(data.get("Attachable")),
        ingress=bool(data.get("Ingress")),
        options=notes.map(_mapping(data.get("Options"), "Options"), "options"),
        subnets=subnets,
        gateways=gateways,
        containers=tuple(names),
        truncated=tuple(notes),
    )


def parse_engine(version: Mapping[str, Any], info: Mapping[str, Any]) -> Engine:
    """``GET /version`` and ``GET /info`` together, within the caps."""
    version = _mapping(version, "version")
    info = _mapping(info, "info")
    swarm = _mapping(info.get("Swarm"), "Swarm")
    plugins = _mapping(info.get("Plugins"), "Plugins")
    registry = _mapping(info.get("RegistryConfig"), "RegistryConfig")
    notes = _Notes()
    insecure = [c for c in notes.strings(registry.get("InsecureRegistryCIDRs"), "InsecureRegistryCIDRs") if c not in DEFAULT_INSECURE_CIDRS]
    insecure += [
        text(name)
        for name, index in sorted(_mapping(registry.get("IndexConfigs"), "IndexConfigs").items())[:MAX_ITEMS]
        if isinstance(index, Mapping) and index.get("Secure") is False
    ]
    return Engine(
        name=text(info.get("Name") or ""),
        server_version=text(version.get("Version") or info.get("ServerVersion") or "", 64),
        api_version=text(version.get("ApiVersion") or "", 16),
        os=text(version.get("Os") or info.get("OSType") or "", 64),
        kernel_version=text(info.get("KernelVersion") or ""),
        operating_system=text(info.get("OperatingSystem") or ""),
        security_options=notes.strings(info.get("SecurityOptions"), "SecurityOptions"),
        warnings=notes.strings(info.get("Warnings"), "Warnings"),
        swarm_state=text(swarm.get("LocalNodeState") or "inactive", 32),
        swarm_manager=bool(swarm.get("ControlAvailable")),
        authorization_plugins=notes.strings(plugins.get("Authorization"), "Plugins.Authorization"),
        insecure_registries=notes.items(insecure, "insecure registries"),
        live_restore=bool(info.get("LiveRestoreEnabled")),
        truncated=tuple(notes),
    )


def build_snapshot(
    *,
    collected_at: str,
    connection: Connection,
    version: Mapping[str, Any],
    info: Mapping[str, Any],
    networks: Iterable[Mapping[str, Any]],
    containers: Iterable[Container | Mapping[str, Any]],
    api_calls: int = 0,
    inspects_reused: int = 0,
    answers: str = "",
) -> HostSnapshot:
    """Assemble a snapshot from raw answers (containers may be already parsed, when reused)."""
    parsed = [c if isinstance(c, Container) else parse_container(c) for c in containers]
    return HostSnapshot(
        collected_at=collected_at,
        connection=connection,
        engine=parse_engine(version, info),
        networks=tuple(sorted((parse_network(n) for n in networks), key=lambda n: n.name)),
        containers=tuple(sorted(parsed, key=lambda c: c.name)),
        api_calls=api_calls,
        inspects_reused=inspects_reused,
        answers=answers,
    )
