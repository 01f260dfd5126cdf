"""What containers reach on the host itself, from configuration and the host's listeners.

A host-network container (or one joined to it) is on the host: it reaches every host
service, the ones bound to loopback included, which trust their callers because only
the host could reach them. A container on a bridge reaches host services bound to every
address, or to the bridge's own address, through its gateway. Computed from the
snapshot only: no traffic is ever sent to find out.

Host listeners are read only for hosts that opt in; without them these rules are silent,
and ``host-listeners-unread`` says why when reading was asked for and failed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from posture.collector.snapshot import Container, Listener, Network

from .base import Check, Hit, RuleContext, Severity, SubjectType, rule
from .bindings import effective, is_any, is_loopback
from .context import host_network_via
from .ports import SENSITIVE_PORTS
from .remediation import advice, where

# Host services known by their process name, whatever port they were moved to.
SENSITIVE_PROCESSES: dict[str, str] = {
    "postgres": "PostgreSQL",
    "mysqld": "MySQL/MariaDB",
    "mariadbd": "MySQL/MariaDB",
    "redis-server": "Redis",
    "mongod": "MongoDB",
    "memcached": "Memcached",
    "etcd": "etcd",
    "kubelet": "kubelet",
    "dockerd": "Docker Engine API",
    "containerd": "containerd",
    "beam.smp": "RabbitMQ / Erlang distribution",
    "epmd": "Erlang port mapper",
    "nats-server": "NATS",
    "mosquitto": "MQTT",
    "consul": "Consul",
    "vault": "Vault",
}
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
# (bound to loopback only, a sensitive service) → severity for a host-network container.
_HOST_NETWORK_SEVERITY = {
    (True, True): Severity.CRITICAL,
    (True, False): Severity.HIGH,
    (False, True): Severity.MEDIUM,
    (False, False): Severity.LOW,
}


def service_of(listener: Listener) -> str:
    return SENSITIVE_PORTS.get(listener.port) or SENSITIVE_PROCESSES.get(listener.process, "")


def describe(listener: Listener) -> str:
    """``PostgreSQL on 127.0.0.1:5432, process postgres``."""
    what = service_of(listener) or f"{listener.protocol.upper()} port {listener.port}"
    process = f", process {listener.process}" if listener.process else ""
    return f"{what} on {listener.endpoint}{process}"


def bound_to(listener: Listener) -> str:
    if is_any(listener.address):
        return "every address"
    return "loopback only" if is_loopback(listener.address) else f"address {listener.address} only"


def _publications(ctx: RuleContext) -> dict[tuple[int, str], set[str]]:
    """Host ports that are containers' own publications, with their addresses: the port
    rules judge those, not these."""
    ports: dict[tuple[int, str], set[str]] = {}
    for container in ctx.snapshot.containers:
        for eff in effective(container, ctx):
            if eff.host_port is not None:
                ports.setdefault((eff.host_port, eff.configured.protocol), set()).update(eff.addresses)
    return ports


def _is_publication(listener: Listener, published: dict[tuple[int, str], set[str]]) -> bool:
    if listener.process == "docker-proxy":
        return True
    addresses = published.get((listener.port, listener.protocol), set())
    return listener.address in addresses or (is_any(listener.address) and any(is_any(a) for a in addresses))


def host_listeners(ctx: RuleContext) -> list[Listener]:
    """The host's own services, loopback ones first; published container ports left out."""
    state = ctx.snapshot.host
    if state is None:
        return []
    if "host_listeners" not in ctx.memo:
        published = _publications(ctx)
        own = [x for x in state.listeners if not _is_publication(x, published)]
        ctx.memo["host_listeners"] = sorted(own, key=lambda x: (not is_loopback(x.address), x.protocol, x.port, x.address))
    return ctx.memo["host_listeners"]


def _evidence(listener: Listener, ctx: RuleContext, **extra: object) -> dict[str, object]:
    state = ctx.snapshot.host
    return {
        "listener": listener.endpoint,
        "protocol": listener.protocol,
        "process": listener.process or "(not readable)",
        "service": service_of(listener) or "—",
        "bound_to": bound_to(listener),
        "listeners_read_with": state.listeners_source if state else "",
    } | extra


@rule(
    id="host-network-reaches-listener",
    title="Host-network container reaches a host service",
    severity=Severity.HIGH,
    subject=SubjectType.CONTAINER,
    verification=Check.HOST_ACCESS,
    rationale="""A container on the host network (or joined to one) is on the host: it connects to
    every service the host listens on, including those bound to 127.0.0.1 that were never meant to
    be reachable by anything but the host and so often trust every caller (databases, caches,
    metadata proxies, admin consoles). Critical for a sensitive service bound to loopback only,
    high for any other loopback service, medium for a sensitive service on other addresses, low
    otherwise.""",
    beyond_cis="""CIS 5.10 flags host networking; this names each host service the container reaches,
    from the host's own listening sockets (read over SSH or /proc/net, opt-in per host).""",
)
def host_network_reaches(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    owner = host_network_via(container, ctx)
    if owner is None:
        return
    via = "the host network" if owner is container else f"the host network, through the namespace of '{owner.name}'"
    for listener in host_listeners(ctx):
        service = service_of(listener)
        loopback = is_loopback(listener.address)
        severity = _HOST_NETWORK_SEVERITY[loopback, bool(service)]
        reach = f"reaches {describe(listener)}"
        name = service or f"the service on port {listener.port}"
        trust = (
            f" {name} is bound to loopback only, so it expects callers on this host alone and may not authenticate them."
            if loopback
            else f" {name} listens on {bound_to(listener)}."
        )
        flag = "--network host" if owner is container else f"--network {container.network_mode}"
        yield Hit(
            key=f"{listener.protocol}/{listener.endpoint}",
            evidence=_evidence(listener, ctx, reach=reach, via=via),
            remediation=advice(
                f"{where(container)} is on {via}, so it {reach} as if it ran on the host.{trust} "
                f"Move it to a bridge network; if it needs {name}, let it connect through a published "
                f"address it is meant to use, and require authentication on {name} either way.",
                run=f"replace {flag} with --network app-net (and --add-host db:host-gateway only if it needs this host's {name})",
                compose="delete network_mode: host, add networks: [app-net]",
            ),
            severity=severity,
        )


@dataclass(frozen=True)
class _Gateway:
    network: Network
    address: str

    @property
    def interface(self) -> str:
        return self.network.options.get(BRIDGE_NAME_OPTION) or f"br-{self.network.id[:12]}"


def _gateways(container: Container, ctx: RuleContext) -> list[_Gateway]:
    owner = ctx.network_chain(container)[-1]
    found = []
    for network in ctx.networks_of(owner):
        if network.driver != "bridge":
            continue  # macvlan/ipvlan children cannot reach their parent; overlays have no host gateway
        addresses = list(network.gateways)
        if not addresses:
            # The engine gives a bridge the first address of its subnet unless told otherwise.
            for subnet in network.subnets:
                try:
                    addresses.append(str(next(ipaddress.ip_network(subnet, strict=False).hosts())))
                except (ValueError, StopIteration):
                    continue
        found += [_Gateway(network, a) for a in addresses]
    return found


def _reachable_at(listener: Listener, gateways: list[_Gateway]) -> list[_Gateway]:
    hits = []
    for gw in gateways:
        v6 = ":" in gw.address
        if listener.address == gw.address:
            hits.append(gw)
        elif listener.address in ("*", "::") or (listener.address == "0.0.0.0" and not v6):
            # A socket on :: usually takes IPv4 too (dual stack) unless it is IPV6_V6ONLY.
            hits.append(gw)
    return hits


@rule(
    id="bridge-reaches-host-listener",
    title="Bridged container reaches a host service through its gateway",
    severity=Severity.LOW,
    subject=SubjectType.CONTAINER,
    verification=Check.HOST_ACCESS,
    rationale="""A host service bound to every address (0.0.0.0, ::) also listens on each Docker
    bridge's gateway address, so every container on that bridge connects to it, whatever the host
    firewall does to outside traffic. A Redis on 0.0.0.0:6379 is reachable from each container at
    172.17.0.1:6379. High for a sensitive service, low for one bound to the gateway on purpose,
    informational otherwise.""",
    beyond_cis="CIS has no item; computed from the host's listening sockets (opt-in per host) and the bridge gateways.",
)
def bridge_reaches(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    if host_network_via(container, ctx) is not None:
        return  # reported by host-network-reaches-listener
    gateways = _gateways(container, ctx)
    if not gateways:
        return
    for listener in host_listeners(ctx):
        at = _reachable_at(listener, gateways)
        if not at:
            continue
        service = service_of(listener)
        deliberate = not is_any(listener.address)
        severity = Severity.HIGH if service else (Severity.LOW if deliberate else Severity.INFO)
        first = at[0]
        endpoint = Listener(address=first.address, port=listener.port, protocol=listener.protocol).endpoint
        reach = f"reaches {describe(listener)} at {endpoint} through the gateway of network '{first.network.name}'"
        name = service or f"the service on port {listener.port}"
        drop = " ; ".join(
            f"iptables -I INPUT -i {interface} -p {listener.protocol} --dport {listener.port} -j DROP" for interface in dict.fromkeys(gw.interface for gw in at)
        )
        yield Hit(
            key=f"{listener.protocol}/{listener.endpoint}",
            evidence=_evidence(
                listener,
                ctx,
                reach=reach,
                reached_at=[f"{Listener(address=gw.address, port=listener.port, protocol=listener.protocol).endpoint} ({gw.network.name})" for gw in at],
                networks=sorted({gw.network.name for gw in at}),
            ),
            remediation=advice(
                f"{where(container)} {reach}. "
                + (
                    f"{name} is bound to the bridge address on purpose: make sure it authenticates every container that can reach it."
                    if deliberate
                    else f"On the host, bind {name} to 127.0.0.1 (or to the one address its clients use) instead of {listener.address}, "
                    f"or drop container traffic to it on the bridge interface; if {where(container)} needs it, keep it reachable and require authentication."
                ),
                run=drop + "  (host firewall; or move the container to a network that must not reach the host)",
                compose="networks: {backend: {internal: true}} keeps containers off other networks, but an internal bridge still reaches its gateway: bind the host service instead",
            ),
            severity=severity,
        )


@rule(
    id="host-listeners-unread",
    title="Host listeners could not be read",
    severity=Severity.INFO,
    subject=SubjectType.HOST,
    verification=Check.HOST_ACCESS,
    rationale="""The host was registered with host listeners on, but its listening sockets could not
    be read at the last poll, so what containers reach on the host is unknown rather than empty. The
    container findings are unaffected.""",
    beyond_cis="Posture's own reading; says so instead of guessing.",
)
def listeners_unread(ctx: RuleContext) -> Iterator[Hit]:
    state = ctx.snapshot.host
    if state is not None and state.listeners_error:
        yield Hit(
            evidence={"error": state.listeners_error, "connected_via": ctx.snapshot.connection.address},
            remediation=advice(
                "Let Posture read the host's listening sockets: register the host as ssh://user@host (the user may run `ss -Hltnup`; "
                "root is not needed, though process names of other users' services then stay hidden), or run the worker on the engine's "
                "machine for a unix:// host. Otherwise turn host listeners off for this host.",
            ),
        )
