"""Hand-built snapshots for rule tests: milliseconds, no engine."""

from __future__ import annotations

from posture.collector.snapshot import (
    Attachment,
    Connection,
    Container,
    Engine,
    HostSnapshot,
    HostState,
    Network,
    PortBinding,
    frozen_map,
)
from posture.rules import FindingSpec, evaluate

BINDING = "com.docker.network.bridge.host_binding_ipv4"


def bridge(host_binding: str = "0.0.0.0") -> Network:
    """The default bridge as the engine reports it; ``--ip`` shows as its binding option."""
    options = {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.name": "docker0", BINDING: host_binding}
    return Network(id="b" * 64, name="bridge", driver="bridge", options=frozen_map(options), subnets=("172.17.0.0/16",), gateways=("172.17.0.1",))


def user_network(name: str, *, binding: str = "", subnet: str = "172.20.0.0/16", gateway: str = "172.20.0.1", **fields: object) -> Network:
    options = {BINDING: binding} if binding else {}
    return Network(id=(name * 64)[:64], name=name, driver="bridge", options=frozen_map(options), subnets=(subnet,), gateways=(gateway,), **fields)


def port(container_port: int, host_port: int | None = None, host_ip: str = "", protocol: str = "tcp") -> PortBinding:
    return PortBinding(container_port=container_port, protocol=protocol, host_ip=host_ip, host_port=host_port)


def container(name: str, *, network: str = "bridge", running: bool = True, **fields: object) -> Container:
    """A container attached to ``network`` (its NetworkMode) unless ``network_mode`` says otherwise."""
    mode = fields.pop("network_mode", "default" if network == "bridge" else network)
    attachments = () if mode in ("host", "none") or str(mode).startswith("container:") else (Attachment(network=network),)
    return Container(
        id=f"{name:0<12}"[:12] + "0" * 52, name=name, state="running" if running else "exited", network_mode=mode, attachments=attachments, **fields
    )


def snapshot(*containers: Container, networks: tuple[Network, ...] | None = None, host: HostState | None = None) -> HostSnapshot:
    return HostSnapshot(
        collected_at="2024-01-01T00:00:00+00:00",
        connection=Connection(scheme="ssh", address="ssh://root@192.0.2.10"),
        engine=Engine(name="docker-1", server_version="27.0.0"),
        networks=networks if networks is not None else (bridge(),),
        containers=containers,
        host=host,
    )


def found(snap: HostSnapshot, rule_id: str) -> dict[str, FindingSpec]:
    """Findings of one rule by ``subject`` or ``subject#key``."""
    return {s.subject_name + (f"#{s.key}" if s.key else ""): s for s in evaluate(snap, host_name="h") if s.rule_id == rule_id}
