"""Docker networks and what containers attached to them can reach."""

from __future__ import annotations

from collections.abc import Iterator

from posture.collector.snapshot import Container, Network

from .base import Hit, RuleContext, Severity, SubjectType, rule
from .remediation import advice, loopback_flags, where


@rule(
    id="default-bridge",
    cis="5.30",
    title="Container attached to the default bridge network",
    severity=Severity.LOW,
    subject=SubjectType.CONTAINER,
    rationale="""All containers on the default bridge can reach each other, with no name-based
    isolation; user-defined networks separate applications and give DNS between members only.""",
    beyond_cis="""The default bridge is recognised by the network named 'bridge', whatever its Linux
    interface is called; docker-bench-security looks for docker0 and misses engines run with --bridge.""",
)
def default_bridge(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    for network in ctx.networks_of(container):
        if network.is_default_bridge:
            name = network.options.get("com.docker.network.bridge.name", "")
            yield Hit(
                evidence={
                    "NetworkSettings.Networks": [a.network for a in container.attachments],
                    "bridge_interface": name,
                    "HostConfig.NetworkMode": container.network_mode,
                },
                remediation=advice(
                    f"Move {where(container)} to a user-defined network shared only with the containers it talks to.",
                    run="docker network create app-net, then --network app-net",
                    compose="compose already creates a project network; remove network_mode: bridge if set",
                ),
            )


@rule(
    id="net-sysctls",
    title="Container sets network sysctls",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""net.* sysctls change how the container's (or, with host networking, the host's)
    network stack routes and filters: ip_forward turns it into a router, route_localnet exposes
    loopback services.""",
    beyond_cis="CIS has no item for namespaced sysctls.",
)
def net_sysctls(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    net = {k: v for k, v in container.sysctls.items() if k.startswith("net.")}
    if net:
        flags = " ".join(f"--sysctl {k}={v}" for k, v in net.items())
        yield Hit(
            evidence={"HostConfig.Sysctls": net},
            remediation=advice(
                f"Check that {where(container)} needs these kernel network settings; remove the ones it does not.",
                run=f"remove {flags}",
                compose="delete under sysctls: " + ", ".join(net),
            ),
        )


@rule(
    id="host-gateway",
    title="Container is given a route name for the host (host-gateway)",
    severity=Severity.LOW,
    subject=SubjectType.CONTAINER,
    rationale="""--add-host NAME:host-gateway resolves a name to the host's bridge address, so the
    container reaches services bound on the host, including ones meant for the host alone.""",
    beyond_cis="CIS has no item for extra hosts.",
)
def host_gateway(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    entries = [h for h in container.extra_hosts if h.endswith(":host-gateway") or h.endswith("=host-gateway")]
    if entries:
        yield Hit(
            evidence={"HostConfig.ExtraHosts": entries},
            remediation=advice(
                f"Make sure every host service {where(container)} can now reach is meant for it, bound to the bridge address and authenticated.",
                run=" ".join(f"remove --add-host {e}" for e in entries),
                compose="delete extra_hosts: " + ", ".join(f'"{e}"' for e in entries),
            ),
        )


@rule(
    id="ipv6-published",
    title="Ports published from a container on an IPv6-enabled network",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""On an IPv6 network the container has a globally routable address and published ports
    answer on IPv6 too, where many hosts have no ip6tables rules at all.""",
    beyond_cis="CIS and docker-bench-security ignore IPv6.",
)
def ipv6_published(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    if not container.port_bindings and not container.publish_all_ports:
        return
    for network in ctx.networks_of(container):
        if network.enable_ipv6:
            yield Hit(
                key=network.name,
                evidence={
                    "network": network.name,
                    "EnableIPv6": True,
                    "subnets": list(network.subnets),
                    "published": [b.spec for b in container.port_bindings],
                },
                remediation=advice(
                    f"Bind the ports of {where(container)} to explicit addresses and make sure ip6tables (or nftables) filters the IPv6 subnet.",
                    run=f"use {loopback_flags(container)[0]} (and the same on [::1] if IPv6 clients need it)",
                    compose=f"ports: {loopback_flags(container)[1]}; or enable_ipv6: false on network '{network.name}'",
                ),
                exposed=True,
            )


@rule(
    id="icc-default-bridge",
    cis="2.2",
    title="Inter-container communication enabled on the default bridge",
    severity=Severity.MEDIUM,
    subject=SubjectType.NETWORK,
    rationale="""With ICC on, every container on the default bridge can reach every port of every
    other: one compromised container can attack all its neighbours.""",
    beyond_cis="Read from the network's own option, so it is right whatever the bridge interface is called.",
)
def icc_default_bridge(network: Network, ctx: RuleContext) -> Iterator[Hit]:
    if network.is_default_bridge and network.icc_enabled:
        yield Hit(
            evidence={
                "network": network.name,
                "Options": dict(network.options),
                "com.docker.network.bridge.enable_icc": network.options.get("com.docker.network.bridge.enable_icc", "true"),
            },
            remediation=advice(
                "Start the daemon with inter-container communication off and link containers through user-defined networks.",
                run='dockerd --icc=false, or "icc": false in /etc/docker/daemon.json',
                compose="compose projects use their own networks; nothing to change in compose files",
            ),
        )


@rule(
    id="icc-user-bridge",
    title="Containers on a user-defined bridge can all reach each other",
    severity=Severity.LOW,
    subject=SubjectType.NETWORK,
    rationale="""A user-defined bridge with several members lets each reach every port of the others;
    split networks by which containers actually talk.""",
    beyond_cis="CIS 2.2 covers only the default bridge.",
)
def icc_user_bridge(network: Network, ctx: RuleContext) -> Iterator[Hit]:
    if network.driver == "bridge" and not network.is_default_bridge and not network.internal and network.icc_enabled and len(network.containers) > 1:
        yield Hit(
            evidence={
                "network": network.name,
                "containers": list(network.containers),
                "com.docker.network.bridge.enable_icc": network.options.get("com.docker.network.bridge.enable_icc", "true"),
            },
            remediation=advice(
                f"Split '{network.name}' so each network holds only containers that talk to each other, or turn ICC off on it.",
                run=f"docker network create -o com.docker.network.bridge.enable_icc=false {network.name}-isolated",
                compose="networks: {backend: {internal: true}} for the datastores; one network per pair of tiers",
            ),
        )


@rule(
    id="macvlan-network",
    title="macvlan or ipvlan network bypasses the host firewall",
    severity=Severity.HIGH,
    subject=SubjectType.NETWORK,
    rationale="""macvlan and ipvlan put containers straight on the physical network with their own
    addresses: host firewall rules, DOCKER-USER and port publishing do not apply to them.""",
    beyond_cis="CIS has no item for these drivers.",
)
def macvlan(network: Network, ctx: RuleContext) -> Iterator[Hit]:
    if network.driver in ("macvlan", "ipvlan"):
        yield Hit(
            evidence={"network": network.name, "Driver": network.driver, "parent": network.options.get("parent", ""), "containers": list(network.containers)},
            remediation=advice(
                f"Make sure the upstream network filters traffic to '{network.name}', or use a bridge network with published ports instead.",
                run=f"docker network create --driver bridge {network.name}-bridge and -p 127.0.0.1:PORT:PORT",
                compose="driver: bridge instead of driver: " + network.driver,
            ),
            exposed=True,
        )


@rule(
    id="overlay-unencrypted",
    cis="7.3",
    title="Overlay network traffic is not encrypted",
    severity=Severity.MEDIUM,
    subject=SubjectType.NETWORK,
    rationale="""Overlay traffic crosses the physical network between nodes in VXLAN; without the
    encrypted option anyone on the path can read and inject it.""",
)
def overlay_unencrypted(network: Network, ctx: RuleContext) -> Iterator[Hit]:
    if network.driver == "overlay" and not network.encrypted and not network.ingress:
        yield Hit(
            evidence={"network": network.name, "Driver": "overlay", "Options": dict(network.options)},
            remediation=advice(
                f"Recreate '{network.name}' with encryption.",
                run=f"docker network create -d overlay --opt encrypted {network.name}",
                compose='driver_opts: {encrypted: ""} on the network',
            ),
        )
