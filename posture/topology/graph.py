"""A host's exposure as a graph: pure, from a snapshot and the host's open findings.

Nodes: the outside, the host's addresses and listeners, published ports, containers
grouped by network (host-network containers in a group of their own), and each
bridge's gateway. Edges: outside → address → published port → container, container →
host listener it reaches (bridged containers through their network's gateway, one edge
per network rather than one per container), container → the container whose network
namespace it joins. Each node and edge carries the worst open finding behind it.

Readable at a few hundred containers: containers with no finding above info and no
edge are folded into one node per network past ``FOLD_AFTER``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from posture.collector.snapshot import Container, HostSnapshot, Listener
from posture.rules.base import RuleContext, Severity
from posture.rules.bindings import EffectiveBinding, effective, is_any, is_loopback
from posture.rules.context import host_network_via
from posture.rules.reachability import bound_to, describe, host_listeners

FOLD_AFTER = 6
PORT_RULES = frozenset({"port-all-interfaces", "port-sensitive-service-exposed", "port-privileged-host-port", "firewall-bypassed-by-docker"})
REACH_RULES = frozenset({"host-network-reaches-listener", "bridge-reaches-host-listener"})
NAMESPACE_RULES = frozenset({"host-network", "shared-network-namespace"})
HOST_NETWORK = "host network"
# Findings every container of a network shares, drawn once on the network (its gateway's edges).
NETWORK_WIDE_RULES = frozenset({"bridge-reaches-host-listener", "default-bridge"})


class FindingRef(Protocol):
    rule_id: str
    severity: str
    subject_key: str
    item_key: str


@dataclass
class Node:
    id: str
    lines: list[str]
    kind: str  # outside, address, listener, port, container, gateway, folded
    cluster: str = ""
    severity: str = ""


@dataclass
class Edge:
    tail: str
    head: str
    label: str = ""
    severity: str = ""
    dashed: bool = False


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    clusters: dict[str, str] = field(default_factory=dict)  # id → label
    folded: int = 0
    _edge_index: dict[tuple[str, str, str, bool], Edge] = field(default_factory=dict, repr=False)

    def node(self, key: str, lines: list[str], kind: str, cluster: str = "") -> Node:
        """One node per ``key``; ids are Posture's own, never engine text."""
        if key not in self.nodes:
            self.nodes[key] = Node(id=f"n{len(self.nodes)}", lines=lines, kind=kind, cluster=cluster)
        return self.nodes[key]

    def edge(self, tail: Node, head: Node, label: str = "", severity: str = "", dashed: bool = False) -> None:
        """Draw each edge once, carrying the worst severity of everything drawn along it."""
        key = (tail.id, head.id, label, dashed)
        existing = self._edge_index.get(key)
        if existing is not None:
            existing.severity = worst([existing.severity, severity])
            return
        self._edge_index[key] = Edge(tail.id, head.id, label, severity, dashed)
        self.edges.append(self._edge_index[key])


def worst(severities: Iterable[str]) -> str:
    ranked = [Severity(s) for s in severities if s]
    return max(ranked, key=lambda s: s.rank).value if ranked else ""


class _Findings:
    def __init__(self, findings: Iterable[FindingRef]) -> None:
        self.by_subject: dict[str, list[FindingRef]] = defaultdict(list)
        for f in findings:
            self.by_subject[f.subject_key].append(f)

    def container(self, c: Container) -> str:
        return worst(f.severity for f in self.by_subject.get(c.subject_key, ()))

    def port(self, c: Container, eff: EffectiveBinding) -> str:
        b = eff.configured
        prefixes = (f"{b.container_port}/{b.protocol}", f"{eff.host_port}/{b.protocol}")
        return worst(f.severity for f in self.by_subject.get(c.subject_key, ()) if f.rule_id in PORT_RULES and f.item_key.startswith(prefixes))

    def reach(self, c: Container, listener: Listener) -> str:
        key = f"{listener.protocol}/{listener.endpoint}"
        return worst(f.severity for f in self.by_subject.get(c.subject_key, ()) if f.rule_id in REACH_RULES and f.item_key == key)

    def namespace(self, c: Container) -> str:
        return worst(f.severity for f in self.by_subject.get(c.subject_key, ()) if f.rule_id in NAMESPACE_RULES)


def _address_node(g: Graph, address: str) -> Node:
    if is_any(address):
        return g.node("addr:any", ["every address", "0.0.0.0 / ::"], "address", "host")
    if is_loopback(address):
        return g.node("addr:lo", ["loopback", "127.0.0.1 / ::1"], "address", "host")
    return g.node(f"addr:{address}", ["address", address], "address", "host")


def _container_lines(c: Container) -> list[str]:
    lines = [c.name]
    if c.compose_project and c.compose_service:
        lines.append(f"{c.compose_project}/{c.compose_service}")
    lines.append(c.image[:40])
    if not c.running:
        lines.append("(not running)")
    return lines


def _group(c: Container, ctx: RuleContext) -> str:
    if host_network_via(c, ctx) is not None:
        return HOST_NETWORK
    owner = ctx.network_chain(c)[-1]
    if owner.attachments:
        return owner.attachments[0].network
    return "no network" if owner.network_mode == "none" else owner.network_mode


def build(snapshot: HostSnapshot, findings: Iterable[FindingRef], host_name: str = "") -> Graph:
    ctx = RuleContext(snapshot=snapshot)
    found = _Findings(findings)
    g = Graph()
    g.clusters["host"] = f"host {host_name or snapshot.engine.name}: addresses and published ports"
    outside = g.node("outside", ["outside", "any network the host is on"], "outside")
    listeners = host_listeners(ctx)
    if listeners:
        # On the far side of the containers: what they reach on the host itself.
        g.clusters["services"] = "host services (listening sockets)"
    for listener in listeners:
        g.node(f"listen:{listener.protocol}/{listener.endpoint}", [describe(listener), bound_to(listener)], "listener", "services")

    groups: dict[str, list[Container]] = defaultdict(list)
    for c in snapshot.containers:
        groups[_group(c, ctx)].append(c)
    nodes: dict[str, Node] = {}
    joined = {chain[1].id for c in snapshot.containers if len(chain := ctx.network_chain(c)) > 1}
    for name, members in sorted(groups.items()):
        cluster = f"net:{name}"
        g.clusters[cluster] = "host network namespace" if name == HOST_NETWORK else f"network {name}"
        network = snapshot.network(name)
        if network is not None and network.gateways:
            g.node(f"gw:{name}", ["gateway", ", ".join(network.gateways)], "gateway", cluster)
        quiet = [c for c in members if c.id not in joined and _quiet(c, ctx, found)]
        fold = quiet if len(quiet) > FOLD_AFTER else []
        for c in members:
            if c in fold:
                continue
            node = g.node(f"c:{c.id}", _container_lines(c), "container", cluster)
            node.severity = found.container(c)
            nodes[c.id] = node
        if fold:
            names = ", ".join(c.name for c in fold[:4]) + (", …" if len(fold) > 4 else "")
            folded = g.node(f"fold:{name}", [f"{len(fold)} more containers", "nothing beyond what their network shows", names], "folded", cluster)
            folded.severity = worst(found.container(c) for c in fold)
            g.folded += len(fold)

    for c in snapshot.containers:
        node = nodes.get(c.id)
        if node is None:
            continue
        _publications(g, c, node, ctx, found, outside)
        _namespaces(g, c, node, ctx, found, nodes)
        if host_network_via(c, ctx) is not None:
            for listener in listeners:
                target = g.nodes[f"listen:{listener.protocol}/{listener.endpoint}"]
                g.edge(node, target, "reaches", found.reach(c, listener))
    _bridge_reach(g, snapshot, ctx, found, listeners)
    return g


def _quiet(c: Container, ctx: RuleContext, found: _Findings) -> bool:
    """Nothing to draw about it alone: no finding above info but what its whole network
    shares, no publication, a network namespace of its own."""
    if worst(f.severity for f in found.by_subject.get(c.subject_key, ()) if f.severity != Severity.INFO and f.rule_id not in NETWORK_WIDE_RULES):
        return False
    if any(e.published for e in effective(c, ctx)):
        return False
    return not c.network_mode.startswith("container:") and host_network_via(c, ctx) is None


def _publications(g: Graph, c: Container, node: Node, ctx: RuleContext, found: _Findings, outside: Node) -> None:
    for eff in effective(c, ctx):
        if not eff.published:
            continue
        b = eff.configured
        severity = found.port(c, eff)
        # Every address, IPv4 and IPv6 alike, is one way in: one node, not two.
        addresses = ["*"] if eff.all_interfaces else list(eff.addresses)
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            label = f"{host}:{eff.host_port or '?'}/{b.protocol}"
            port = g.node(f"port:{label}", [label], "port", "host")
            addr = _address_node(g, address)
            if not is_loopback(address):
                g.edge(outside, addr)
            g.edge(addr, port, severity=severity)
            g.edge(port, node, f"→ {b.container_port}", severity)


def _namespaces(g: Graph, c: Container, node: Node, ctx: RuleContext, found: _Findings, nodes: dict[str, Node]) -> None:
    if not c.network_mode.startswith("container:"):
        return
    chain = ctx.network_chain(c)
    if len(chain) > 1 and chain[1].id in nodes:
        g.edge(node, nodes[chain[1].id], "shares network namespace", found.namespace(c), dashed=True)


def _bridge_reach(g: Graph, snapshot: HostSnapshot, ctx: RuleContext, found: _Findings, listeners: list[Listener]) -> None:
    """One edge per network and listener: every container on a bridge reaches the same services."""
    severities: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c in snapshot.containers:
        for f in found.by_subject.get(c.subject_key, ()):
            if f.rule_id == "bridge-reaches-host-listener":
                severities[_group(c, ctx), f.item_key].append(f.severity)
    for (network, key), values in sorted(severities.items()):
        gateway = g.nodes.get(f"gw:{network}")
        listener = g.nodes.get(f"listen:{key}")
        if gateway is not None and listener is not None:
            g.edge(gateway, listener, f"{len(values)} container(s) reach", worst(values))
