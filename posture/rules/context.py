"""Severity that follows context: one setting changes what another one exposes.

A capability means more in the host's namespace than in a container's own; a port
means more when whoever breaks in through it lands in a privileged container. Each
function here answers, for one finding, which other settings of the same container
raise its severity and why. Pure: the rules call them and state the reason in the
finding's evidence and remediation ("severity raised because …").
"""

from __future__ import annotations

from dataclasses import dataclass

from posture.collector.snapshot import Container

from .base import RuleContext, Severity
from .mounts import engine_socket_mounts


@dataclass(frozen=True)
class Raise:
    severity: Severity
    because: str  # the reason, as a clause: "NET_ADMIN acts on the host's own network stack"
    undo: str  # what removing brings the severity back down


def caps_of(container: Container) -> set[str]:
    caps = {c.upper().removeprefix("CAP_") for c in container.cap_add}
    return caps - {c.upper().removeprefix("CAP_") for c in container.cap_drop if c.upper() != "ALL"}


def host_network_via(container: Container, ctx: RuleContext) -> Container | None:
    """The host-network container whose namespace ``container`` uses (itself, or the end of
    its ``container:`` chain); None when it has a namespace of its own."""
    owner = ctx.network_chain(container)[-1]
    return owner if owner.network_mode == "host" else None


def _namespace(container: Container, owner: Container) -> str:
    return "the host network" if owner is container else f"the host network (through '{owner.name}')"


def for_capabilities(container: Container, caps: set[str], ctx: RuleContext) -> list[Raise]:
    raises = []
    owner = host_network_via(container, ctx)
    if owner is not None:
        net = _namespace(container, owner)
        if caps & {"NET_ADMIN", "ALL"}:
            raises.append(
                Raise(
                    Severity.CRITICAL,
                    f"NET_ADMIN on {net} acts on the host's own network stack: it can rewrite the host firewall "
                    "(iptables/nftables), routes and interfaces, for every service on the host",
                    "drop NET_ADMIN or leave the host network",
                )
            )
        if caps & {"NET_RAW", "ALL"}:
            raises.append(
                Raise(
                    Severity.CRITICAL,
                    f"NET_RAW on {net} opens raw sockets on every host interface: it can sniff and spoof the host's traffic",
                    "drop NET_RAW (--cap-drop NET_RAW) or leave the host network",
                )
            )
    if "SYS_PTRACE" in caps or "ALL" in caps:
        if container.pid_mode == "host":
            raises.append(
                Raise(
                    Severity.CRITICAL,
                    "SYS_PTRACE with the host's PID namespace (--pid=host) attaches to any host process: it reads their memory and secrets and injects code",
                    "drop SYS_PTRACE or remove --pid=host",
                )
            )
        elif container.pid_mode.startswith("container:"):
            other = container.pid_mode.split(":", 1)[1]
            raises.append(
                Raise(
                    Severity.HIGH,
                    f"SYS_PTRACE with the PID namespace of '{other}' attaches to that container's processes",
                    f"drop SYS_PTRACE or stop sharing the PID namespace of '{other}'",
                )
            )
    return raises


def for_host_network(container: Container, ctx: RuleContext) -> list[Raise]:
    """A host-network container that may also reconfigure the network it shares with the host."""
    if container.privileged:
        return [
            Raise(
                Severity.CRITICAL,
                "it also runs privileged, so it holds NET_ADMIN and NET_RAW on the host's own network stack",
                "drop --privileged",
            )
        ]
    caps = caps_of(container)
    return [r for r in for_capabilities(container, caps & {"NET_ADMIN", "NET_RAW", "ALL"}, ctx) if r.severity is Severity.CRITICAL]


def for_host_pid(container: Container) -> list[Raise]:
    if container.privileged or caps_of(container) & {"SYS_PTRACE", "ALL"}:
        what = "runs privileged" if container.privileged else "holds SYS_PTRACE"
        return [
            Raise(
                Severity.CRITICAL,
                f"it also {what}, so it can attach to any host process, read its memory and secrets and inject code",
                "drop SYS_PTRACE (or --privileged) or remove --pid=host",
            )
        ]
    return []


def for_published_port(container: Container) -> list[Raise]:
    """Whoever breaks in through a published port gets what the container holds."""
    raises = []
    if container.privileged:
        raises.append(Raise(Severity.CRITICAL, "the container runs privileged: a break-in through this port is root on the host", "drop --privileged"))
    sockets = engine_socket_mounts(container)
    if sockets:
        raises.append(
            Raise(
                Severity.CRITICAL,
                f"the container mounts the engine socket {sockets[0].source}: a break-in through this port controls the engine, which is root on the host",
                f"remove the {sockets[0].source} mount",
            )
        )
    if caps_of(container) & {"SYS_ADMIN", "ALL"}:
        raises.append(Raise(Severity.CRITICAL, "the container holds SYS_ADMIN: a break-in through this port can escape to the host", "drop SYS_ADMIN"))
    return raises


def apply(base: Severity, raises: list[Raise]) -> tuple[Severity, dict[str, object], str]:
    """The raised severity, the evidence that says why, and the sentence leading the remediation."""
    higher = [r for r in raises if r.severity.rank > base.rank]
    if not higher:
        return base, {}, ""
    top = max(higher, key=lambda r: r.severity.rank).severity
    because = "; and ".join(r.because for r in higher)
    undo = " or ".join(dict.fromkeys(r.undo for r in higher))
    evidence = {"severity_raised": {"from": base.value, "to": top.value, "because": [r.because for r in higher]}}
    return top, evidence, f"Severity raised from {base.value} to {top.value} because {because}. To bring it back down: {undo}."


def lead(sentence: str, remediation: str) -> str:
    """Put the reason for a raised severity first in the remediation."""
    return f"{sentence}\n{remediation}" if sentence else remediation
