"""Hand-built snapshots for the rule tests: what an engine would report, written out.

The collector's own agreement with real engines is proven in ``test_rules_on_engine.py``
and ``test_reference_agreement.py``; here each rule is judged on exactly the fields it
reads, in milliseconds. Defaults mirror what Docker reports for a plain
``docker run`` (default bridge, ``NetworkMode=default``, ``IpcMode=private``)::

    snap = snapshot(containers=[container("web", ports=[port(80, 8080)])])
    found = hits(conclude(snap), "port-all-interfaces")

Hosts with host listeners on add what was read around the engine: ``host=host_state(
Listener(...), firewall=recorded_firewall("ufw-docker.iptables"))``; ``user_network``
gives a ``docker network create`` bridge with its subnet and gateway.

``hits`` and ``subjects`` also note, per test, which rules were seen flagging a subject
and staying silent on another, so ``tests/rules/conftest.py`` can hold each test to the
rules it claims with ``@pytest.mark.rule(...)``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from posture.collector.firewall import parse_iptables_save, parse_nft_ruleset
from posture.collector.snapshot import (
    Attachment,
    Connection,
    Container,
    Device,
    Engine,
    Firewall,
    HostSnapshot,
    HostState,
    Listener,
    Mount,
    Network,
    PortBinding,
    frozen_map,
)
from posture.rules import BY_ID, FindingSpec, evaluate
from posture.rules.bindings import BINDING_OPTION

HOST_NAME = "test-host"
COLLECTED_AT = "2026-11-28T10:00:00+00:00"


def object_id(name: str) -> str:
    """A stable 64-hex id per name, shaped like the engine's."""
    return hashlib.sha256(name.encode()).hexdigest()


# --- containers -------------------------------------------------------------------------


def port(container_port: int, host_port: int | None = None, *, ip: str = "", protocol: str = "tcp") -> PortBinding:
    """One ``-p``: ``port(80, 8080)`` is ``-p 8080:80``; ``ip="::"`` is how the engine
    reports ``-p [::]:8080:80``; ``host_port=None`` lets the engine choose."""
    return PortBinding(container_port=container_port, protocol=protocol, host_ip=ip, host_port=host_port)


def bind(source: str, destination: str, *, read_only: bool = False) -> Mount:
    return Mount(type="bind", source=source, destination=destination, read_only=read_only)


def volume(name: str, destination: str, *, read_only: bool = False) -> Mount:
    return Mount(type="volume", source=name, destination=destination, read_only=read_only)


def device(host_path: str, container_path: str | None = None, permissions: str = "rwm") -> Device:
    return Device(host_path=host_path, container_path=container_path or host_path, permissions=permissions)


def compose(project: str, service: str, number: int = 1) -> dict[str, str]:
    """The labels compose puts on a service's container."""
    return {"com.docker.compose.project": project, "com.docker.compose.service": service, "com.docker.compose.container-number": str(number)}


def _in_force(bindings: tuple[PortBinding, ...]) -> tuple[PortBinding, ...]:
    """What a running engine reports in NetworkSettings.Ports: a port published without an
    address is bound on 0.0.0.0 and on ::, one entry each."""
    bound: list[PortBinding] = []
    for b in bindings:
        addresses = ("0.0.0.0", "::") if b.host_ip == "" else (b.host_ip,)
        bound += [PortBinding(container_port=b.container_port, protocol=b.protocol, host_ip=a, host_port=b.host_port) for a in addresses]
    return tuple(bound)


def container(
    name: str,
    *,
    running: bool = True,
    ports: Iterable[PortBinding] = (),
    networks: Iterable[str] | None = None,
    labels: Mapping[str, str] | None = None,
    sysctls: Mapping[str, str] | None = None,
    **fields: object,
) -> Container:
    """A container as the collector would build it from ``docker inspect``.

    ``running=False`` gives state ``exited``; ``networks`` names the networks it is
    attached to (the default bridge unless it shares another namespace); any other
    ``Container`` field may be given as is.
    """
    network_mode = str(fields.get("network_mode", "default"))
    if networks is None:
        networks = () if network_mode == "none" or network_mode.startswith("container:") else ("host",) if network_mode == "host" else ("bridge",)
    networks = tuple(networks)
    if "network_mode" not in fields and networks and networks[0] != "bridge":
        fields["network_mode"] = networks[0]  # docker run --network app-net records the name
    bindings = tuple(ports)
    exposed = tuple(sorted({f"{b.container_port}/{b.protocol}" for b in bindings}))
    values: dict[str, object] = {
        "id": object_id(name),
        "name": name,
        "image": "registry.example.test/app:1",
        "state": "running" if running else "exited",
        "created": "2026-11-27T09:00:00Z",
        "labels": frozen_map(labels),
        "attachments": tuple(Attachment(network=n, network_id=object_id(f"network:{n}")) for n in networks),
        "port_bindings": bindings,
        # docker run -p also records the port as exposed; live bindings exist while it runs.
        "exposed_ports": exposed,
        "bound_ports": _in_force(bindings) if running else (),
        "ipc_mode": "private",
        "sysctls": frozen_map(sysctls),
    }
    values.update(fields)
    return Container(**values)  # type: ignore[arg-type]


# --- networks and the engine -------------------------------------------------------------


def network(name: str, driver: str = "bridge", *, options: Mapping[str, str] | None = None, **fields: object) -> Network:
    """A network; its member list is filled in by ``snapshot`` from the containers."""
    values: dict[str, object] = {
        "id": object_id(f"network:{name}"),
        "name": name,
        "driver": driver,
        "scope": "swarm" if driver == "overlay" else "local",
        "options": frozen_map(options),
    }
    values.update(fields)
    return Network(**values)  # type: ignore[arg-type]


def default_bridge(interface: str = "docker0", *, icc: bool = True, host_binding: str = "0.0.0.0") -> Network:
    """The engine's network named ``bridge``; its Linux interface is whatever --bridge said,
    its default binding address whatever --ip said (``host_binding="127.0.0.1"``)."""
    return network(
        "bridge",
        options={
            "com.docker.network.bridge.default_bridge": "true",
            "com.docker.network.bridge.enable_icc": "true" if icc else "false",
            "com.docker.network.bridge.name": interface,
            BINDING_OPTION: host_binding,
        },
        subnets=("172.17.0.0/16",),
        gateways=("172.17.0.1",),
    )


def default_networks(interface: str = "docker0", *, icc: bool = True, host_binding: str = "0.0.0.0") -> tuple[Network, ...]:
    """What every engine has before anyone creates a network."""
    return (default_bridge(interface, icc=icc, host_binding=host_binding), network("host", "host"), network("none", "null"))


def user_network(name: str, *, binding: str = "", subnet: str = "172.20.0.0/16", **fields: object) -> Network:
    """A ``docker network create`` bridge: its subnet, the gateway (the host's own address on
    it, the first of the subnet) and, with ``binding``, ``-o host_binding_ipv4=...``."""
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    return network(name, options={BINDING_OPTION: binding} if binding else None, subnets=(subnet,), gateways=(gateway,), **fields)


def engine(**fields: object) -> Engine:
    """A rootful engine with the defaults a fresh Debian install reports."""
    values: dict[str, object] = {
        "name": "docker-1",
        "server_version": "26.1.5+dfsg1",
        "api_version": "1.45",
        "os": "linux",
        "kernel_version": "6.1.0-28-amd64",
        "operating_system": "Debian GNU/Linux 12 (bookworm)",
        "security_options": ("name=seccomp,profile=builtin", "name=cgroupns"),
    }
    values.update(fields)
    return Engine(**values)  # type: ignore[arg-type]


_engine = engine  # snapshot() has an ``engine`` argument of its own


def unix(path: str = "/var/run/docker.sock") -> Connection:
    return Connection(scheme="unix", address=f"unix://{path}")


def tcp(address: str = "tcp://10.0.0.5:2376", *, tls: bool = False, client_cert: bool = False) -> Connection:
    return Connection(scheme="tcp", address=address, tls=tls, client_cert=client_cert)


def snapshot(
    containers: Iterable[Container] = (),
    networks: Iterable[Network] | None = None,
    engine: Engine | None = None,
    connection: Connection | None = None,
    **fields: object,
) -> HostSnapshot:
    """A snapshot; networks default to the engine's own three, and each network lists
    the running containers attached to it (as ``/networks`` does) unless given explicitly."""
    containers = tuple(sorted(containers, key=lambda c: c.name))
    nets = []
    for net in default_networks() if networks is None else networks:
        if not net.containers:
            # /networks lists the endpoints of running containers only.
            members = tuple(sorted(c.name for c in containers if c.running and any(a.network == net.name for a in c.attachments)))
            net = replace(net, containers=members)
        nets.append(net)
    fields.setdefault("collected_at", COLLECTED_AT)
    return HostSnapshot(
        connection=connection or unix(),
        engine=engine or _engine(),
        networks=tuple(sorted(nets, key=lambda n: n.name)),
        containers=containers,
        **fields,  # type: ignore[arg-type]
    )


# --- the host around the engine ------------------------------------------------------------

FIREWALLS = Path(__file__).parent / "fixtures" / "firewall"


def host_state(*listeners: Listener, firewall: Firewall | None = None, firewall_error: str = "", listeners_error: str = "") -> HostState:
    """What a host with host listeners on adds to its snapshot: the sockets ``ss -Hltnup``
    found listening (or why they could not be read) and the firewall (or why not)."""
    source = "" if listeners_error else "ss -Hltnup"
    return HostState(listeners=listeners, listeners_source=source, listeners_error=listeners_error, firewall=firewall, firewall_error=firewall_error)


def recorded_firewall(name: str) -> Firewall:
    """A ruleset recorded from a real host (``tests/fixtures/firewall``), parsed as the
    collector parses ``iptables-save`` or ``nft list ruleset`` output."""
    text = (FIREWALLS / name).read_text()
    return parse_nft_ruleset(text) if name.endswith(".nft") else parse_iptables_save(text)


# --- conclusions ---------------------------------------------------------------------------


class Conclusions(list[FindingSpec]):
    """The specs of one evaluation, with the snapshot they judged."""

    def __init__(self, specs: Iterable[FindingSpec], snap: HostSnapshot, host_name: str) -> None:
        super().__init__(specs)
        self.snapshot, self.host_name = snap, host_name


def conclude(snap: HostSnapshot, host_name: str = HOST_NAME) -> Conclusions:
    return Conclusions(evaluate(snap, host_name=host_name), snap, host_name)


# rule id -> {"flagged", "silent"}: what the current test saw, reset by tests/rules/conftest.py.
OBSERVED: dict[str, set[str]] = {}


def _observe(specs: list[FindingSpec], rule_id: str, flagged: set[str]) -> None:
    if rule_id not in BY_ID:
        raise KeyError(f"no rule {rule_id!r} in the catalog")
    seen = OBSERVED.setdefault(rule_id, set())
    if flagged:
        seen.add("flagged")
    if isinstance(specs, Conclusions):
        snap, subject = specs.snapshot, BY_ID[rule_id].subject
        candidates = {
            "container": {c.name for c in snap.containers},
            "network": {n.name for n in snap.networks},
        }.get(str(subject), {specs.host_name or snap.engine.name})
        if candidates - flagged:
            seen.add("silent")


def hits(specs: list[FindingSpec], rule_id: str) -> dict[str, FindingSpec]:
    """The specs of one rule by subject name (plus ``#key`` where the rule keys items)."""
    found = {s.subject_name + (f"#{s.key}" if s.key else ""): s for s in specs if s.rule_id == rule_id}
    _observe(specs, rule_id, {s.subject_name for s in specs if s.rule_id == rule_id})
    return found


def subjects(specs: list[FindingSpec], rule_id: str) -> set[str]:
    """The names of the subjects one rule flagged."""
    return {k.split("#", 1)[0] for k in hits(specs, rule_id)}


def only(specs: list[FindingSpec], rule_id: str) -> FindingSpec:
    """The one spec of ``rule_id``; fails if there are none or several."""
    (spec,) = hits(specs, rule_id).values()
    return spec
