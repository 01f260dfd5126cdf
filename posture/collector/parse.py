"""Engine JSON to snapshot types: pure functions, tested on recorded engine answers.

Every reader tolerates missing or null fields (engines of different ages omit
different ones) and raises ``MalformedAnswer`` only when the answer's shape is wrong
in a way that would make the snapshot lie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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

# The engine trusts loopback registries by default; only what an operator added counts.
DEFAULT_INSECURE_CIDRS = frozenset({"127.0.0.0/8", "::1/128"})


class MalformedAnswer(ValueError):
    """The engine answered, but not with what the Docker Engine API documents."""


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


def _strings(value: Any, what: str) -> tuple[str, ...]:
    return tuple(str(v) for v in _list(value, what))


def parse_port_key(key: str) -> tuple[int, str]:
    """``"5432/tcp"`` → ``(5432, "tcp")``; a bare number is TCP."""
    port, _, proto = key.partition("/")
    try:
        return int(port), (proto or "tcp")
    except ValueError:
        raise MalformedAnswer(f"port {key!r} is not a number") from None


def parse_port_map(ports: Any, what: str) -> tuple[PortBinding, ...]:
    """``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`` → bindings, sorted."""
    bindings = []
    for key, entries in _mapping(ports, what).items():
        container_port, proto = parse_port_key(key)
        for entry in _list(entries, f"{what}[{key}]"):
            entry = _mapping(entry, f"{what}[{key}]")
            host_port = str(entry.get("HostPort") or "").strip()
            if host_port and not host_port.split("-")[0].isdigit():
                raise MalformedAnswer(f"{what}[{key}]: host port {host_port!r}")
            bindings.append(
                PortBinding(
                    container_port=container_port,
                    protocol=proto,
                    host_ip=str(entry.get("HostIp") or ""),
                    # A range ("8000-8010") is recorded by its first port.
                    host_port=int(host_port.split("-")[0]) if host_port else None,
                )
            )
    return tuple(sorted(bindings, key=lambda b: (b.container_port, b.protocol, b.host_ip)))


def parse_container(data: Mapping[str, Any]) -> Container:
    """One ``GET /containers/{id}/json`` answer."""
    data = _mapping(data, "container")
    if not data.get("Id"):
        raise MalformedAnswer("container: no Id")
    config = _mapping(data.get("Config"), "Config")
    host = _mapping(data.get("HostConfig"), "HostConfig")
    settings = _mapping(data.get("NetworkSettings"), "NetworkSettings")
    state = _mapping(data.get("State"), "State")
    attachments = tuple(
        Attachment(
            network=name,
            network_id=str(_mapping(ep, name).get("NetworkID") or ""),
            ip_address=str(_mapping(ep, name).get("IPAddress") or ""),
            ipv6_address=str(_mapping(ep, name).get("GlobalIPv6Address") or ""),
        )
        for name, ep in sorted(_mapping(settings.get("Networks"), "Networks").items())
    )
    mounts = tuple(
        Mount(
            type=str(m.get("Type") or "bind"),
            source=str(m.get("Source") or m.get("Name") or ""),
            destination=str(m.get("Destination") or ""),
            read_only=not m.get("RW", True),
        )
        for m in (_mapping(m, "Mounts[]") for m in _list(data.get("Mounts"), "Mounts"))
    )
    devices = tuple(
        Device(
            host_path=str(d.get("PathOnHost") or ""),
            container_path=str(d.get("PathInContainer") or ""),
            permissions=str(d.get("CgroupPermissions") or "rwm"),
        )
        for d in (_mapping(d, "Devices[]") for d in _list(host.get("Devices"), "Devices"))
    )
    return Container(
        id=str(data["Id"]),
        name=str(data.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or data.get("Image") or ""),
        state=str(state.get("Status") or ""),
        created=str(data.get("Created") or ""),
        labels=frozen_map({str(k): str(v) for k, v in _mapping(config.get("Labels"), "Labels").items()}),
        network_mode=str(host.get("NetworkMode") or "default"),
        attachments=attachments,
        port_bindings=parse_port_map(host.get("PortBindings"), "HostConfig.PortBindings"),
        bound_ports=parse_port_map(settings.get("Ports"), "NetworkSettings.Ports"),
        publish_all_ports=bool(host.get("PublishAllPorts")),
        exposed_ports=tuple(sorted(_mapping(config.get("ExposedPorts"), "ExposedPorts"))),
        cap_add=_strings(host.get("CapAdd"), "CapAdd"),
        cap_drop=_strings(host.get("CapDrop"), "CapDrop"),
        privileged=bool(host.get("Privileged")),
        pid_mode=str(host.get("PidMode") or ""),
        ipc_mode=str(host.get("IpcMode") or ""),
        uts_mode=str(host.get("UTSMode") or ""),
        userns_mode=str(host.get("UsernsMode") or ""),
        mounts=mounts,
        devices=devices,
        sysctls=frozen_map({str(k): str(v) for k, v in _mapping(host.get("Sysctls"), "Sysctls").items()}),
        extra_hosts=_strings(host.get("ExtraHosts"), "ExtraHosts"),
        security_opt=_strings(host.get("SecurityOpt"), "SecurityOpt"),
    )


def parse_network(data: Mapping[str, Any]) -> Network:
    """One ``GET /networks/{id}`` answer."""
    data = _mapping(data, "network")
    if not data.get("Id") or not data.get("Name"):
        raise MalformedAnswer("network: no Id or Name")
    ipam = _mapping(data.get("IPAM"), "IPAM")
    configs = [c for c in _list(ipam.get("Config"), "IPAM.Config") if isinstance(c, Mapping)]
    subnets = tuple(str(c["Subnet"]) for c in configs if c.get("Subnet"))
    gateways = tuple(str(c["Gateway"]) for c in configs if c.get("Gateway"))
    containers = tuple(sorted(str(_mapping(v, "Containers[]").get("Name") or k) for k, v in _mapping(data.get("Containers"), "Containers").items()))
    return Network(
        id=str(data["Id"]),
        name=str(data["Name"]),
        driver=str(data.get("Driver") or ""),
        scope=str(data.get("Scope") or "local"),
        internal=bool(data.get("Internal")),
        enable_ipv6=bool(data.get("EnableIPv6")),
        attachable=bool(data.get("Attachable")),
        ingress=bool(data.get("Ingress")),
        options=frozen_map({str(k): str(v) for k, v in _mapping(data.get("Options"), "Options").items()}),
        subnets=subnets,
        gateways=gateways,
        containers=containers,
    )


def parse_engine(version: Mapping[str, Any], info: Mapping[str, Any]) -> Engine:
    """``GET /version`` and ``GET /info`` together."""
    version = _mapping(version, "version")
    info = _mapping(info, "info")
    swarm = _mapping(info.get("Swarm"), "Swarm")
    plugins = _mapping(info.get("Plugins"), "Plugins")
    registry = _mapping(info.get("RegistryConfig"), "RegistryConfig")
    insecure = [c for c in _strings(registry.get("InsecureRegistryCIDRs"), "InsecureRegistryCIDRs") if c not in DEFAULT_INSECURE_CIDRS]
    insecure += [
        name
        for name, index in sorted(_mapping(registry.get("IndexConfigs"), "IndexConfigs").items())
        if isinstance(index, Mapping) and index.get("Secure") is False
    ]
    return Engine(
        name=str(info.get("Name") or ""),
        server_version=str(version.get("Version") or info.get("ServerVersion") or ""),
        api_version=str(version.get("ApiVersion") or ""),
        os=str(version.get("Os") or info.get("OSType") or ""),
        kernel_version=str(info.get("KernelVersion") or ""),
        operating_system=str(info.get("OperatingSystem") or ""),
        security_options=_strings(info.get("SecurityOptions"), "SecurityOptions"),
        warnings=_strings(info.get("Warnings"), "Warnings"),
        swarm_state=str(swarm.get("LocalNodeState") or "inactive"),
        swarm_manager=bool(swarm.get("ControlAvailable")),
        authorization_plugins=_strings(plugins.get("Authorization"), "Plugins.Authorization"),
        insecure_registries=tuple(insecure),
        live_restore=bool(info.get("LiveRestoreEnabled")),
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
    )
