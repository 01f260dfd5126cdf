"""Where a published port really listens: the engine's own resolution of a binding.

``HostConfig.PortBindings`` is what the operator asked for. The address the engine
binds can differ: a port published without an address takes the default binding
address of the network it is published on (``com.docker.network.bridge.host_binding_ipv4``;
on the default bridge the daemon's ``--ip`` sets it), else every address, IPv4 and
IPv6. A user-defined network does not inherit ``--ip``. A running container shows the
bindings in force (``NetworkSettings.Ports``), which are the truth whatever the
configuration says.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from posture.collector.snapshot import Container, Network, PortBinding

from .base import RuleContext

BINDING_OPTION = "com.docker.network.bridge.host_binding_ipv4"
ANY_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
# Network modes in which the engine publishes nothing: -p is discarded or refused.
_NO_PUBLISHING = ("host", "none")


def is_any(address: str) -> bool:
    return address in ANY_ADDRESSES


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return address == "localhost"


@dataclass(frozen=True)
class EffectiveBinding:
    """One configured publication and the host addresses it ends on."""

    configured: PortBinding
    addresses: tuple[str, ...]
    host_port: int | None
    how: str  # one sentence: where the address came from
    in_force: bool = False  # read from the running container, not resolved from configuration

    @property
    def all_interfaces(self) -> bool:
        return any(is_any(a) for a in self.addresses)

    @property
    def loopback_only(self) -> bool:
        return bool(self.addresses) and all(is_loopback(a) for a in self.addresses)

    @property
    def published(self) -> bool:
        return bool(self.addresses)

    @property
    def family(self) -> str:
        v6 = any(":" in a for a in self.addresses)
        v4 = any(":" not in a for a in self.addresses)
        if v4 and v6:
            return "IPv4 and IPv6"
        return "IPv6" if v6 else "IPv4"

    def evidence(self) -> dict[str, object]:
        return {
            "effective_addresses": list(self.addresses),
            "effective_host_port": self.host_port,
            "resolved_by": self.how,
        }


def published(container: Container) -> list[PortBinding]:
    """Configured bindings; with -P, every exposed port too (on an address the engine picks)."""
    bindings = list(container.port_bindings)
    if container.publish_all_ports:
        configured = {(b.container_port, b.protocol) for b in bindings}
        for exposed in container.exposed_ports:
            port, _, proto = exposed.partition("/")
            if port.isdigit() and (int(port), proto or "tcp") not in configured:
                bindings.append(PortBinding(container_port=int(port), protocol=proto or "tcp"))
    return bindings


def publishing_network(container: Container, ctx: RuleContext) -> Network | None:
    """The network the engine publishes on: the one ``NetworkMode`` names (``default`` is
    the default bridge), else the first the container is attached to."""
    mode = container.network_mode
    if mode in _NO_PUBLISHING or mode.startswith("container:"):
        return None
    network = ctx.snapshot.network("bridge" if mode == "default" else mode)
    if network is None:
        attached = ctx.networks_of(container)
        network = attached[0] if attached else None
    return network


def _configured(container: Container, binding: PortBinding, ctx: RuleContext) -> EffectiveBinding:
    mode = container.network_mode
    if mode in _NO_PUBLISHING or mode.startswith("container:"):
        return EffectiveBinding(
            configured=binding,
            addresses=(),
            host_port=binding.host_port,
            how=f"network mode {mode}: the engine publishes no ports for it (with host networking the service listens on the host directly)",
        )
    if not is_any(binding.host_ip):
        return EffectiveBinding(configured=binding, addresses=(binding.host_ip,), host_port=binding.host_port, how=f"published with address {binding.host_ip}")
    network = publishing_network(container, ctx)
    option = network.options.get(BINDING_OPTION, "") if network else ""
    if binding.host_ip == "" and option and not is_any(option):
        if network is not None and network.is_default_bridge:
            how = f"published without an address on the default bridge, whose {BINDING_OPTION}={option} (the daemon's --ip)"
        else:
            how = f"published without an address on network '{network.name if network else '?'}', whose {BINDING_OPTION}={option}"
        return EffectiveBinding(configured=binding, addresses=(option,), host_port=binding.host_port, how=how)
    if binding.host_ip:
        return EffectiveBinding(
            configured=binding, addresses=(binding.host_ip,), host_port=binding.host_port, how=f"published on {binding.host_ip}, every address"
        )
    where = f"network '{network.name}'" if network else "its network"
    default = f"{where} has {BINDING_OPTION}={option}" if option else f"{where} sets no default binding address"
    return EffectiveBinding(
        configured=binding,
        addresses=("0.0.0.0", "::"),
        host_port=binding.host_port,
        how=f"published without an address, and {default}: every address, IPv4 and IPv6",
    )


def _in_force(container: Container, binding: PortBinding, resolved: EffectiveBinding) -> EffectiveBinding | None:
    """The bindings a running container holds for this publication, if the engine shows them."""
    candidates = [b for b in container.bound_ports if (b.container_port, b.protocol) == (binding.container_port, binding.protocol)]
    if binding.host_port is not None:
        candidates = [b for b in candidates if b.host_port == binding.host_port]
    elif not is_any(binding.host_ip):
        candidates = [b for b in candidates if b.host_ip == binding.host_ip]
    if not candidates:
        return None
    addresses = tuple(dict.fromkeys(b.host_ip or "0.0.0.0" for b in candidates))
    agrees = set(addresses) == set(resolved.addresses) or (set(addresses) <= ANY_ADDRESSES and resolved.all_interfaces)
    why = f"as configured: {resolved.how}" if agrees else f"the configuration alone would give {', '.join(resolved.addresses)} ({resolved.how})"
    return EffectiveBinding(
        configured=binding,
        addresses=addresses,
        host_port=candidates[0].host_port,
        how=f"bound now on {', '.join(addresses)} (NetworkSettings.Ports of the running container), {why}",
        in_force=True,
    )


def effective(container: Container, ctx: RuleContext) -> list[EffectiveBinding]:
    """Every publication of ``container`` with the addresses it ends on."""
    result = []
    for binding in published(container):
        resolved = _configured(container, binding, ctx)
        now = _in_force(container, binding, resolved) if container.running and resolved.published else None
        result.append(now or resolved)
    return result
