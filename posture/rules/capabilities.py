"""Kernel capabilities and privileged mode: what a container may do to the host kernel."""

from __future__ import annotations

from collections.abc import Iterator

from posture.collector.snapshot import Container

from . import context
from .base import Hit, RuleContext, Severity, SubjectType, rule
from .remediation import advice, where

# Why each capability matters for network posture; the severity it earns on its own.
DANGEROUS_CAPS: dict[str, tuple[Severity, str]] = {
    "ALL": (Severity.CRITICAL, "every capability: equivalent to --privileged without the device access"),
    "SYS_ADMIN": (Severity.CRITICAL, "mount, namespaces, BPF: the usual container escape"),
    "NET_ADMIN": (Severity.HIGH, "rewrite the firewall (iptables/nftables), routes and interfaces of its namespace, and the host's with host networking"),
    "SYS_MODULE": (Severity.CRITICAL, "load kernel modules: full host compromise"),
    "SYS_PTRACE": (Severity.HIGH, "trace and inject into other processes"),
    "DAC_READ_SEARCH": (Severity.HIGH, "read any file by handle (the 'shocker' escape)"),
    "NET_RAW": (Severity.MEDIUM, "craft raw packets: ARP and DNS spoofing of neighbours on the bridge"),
    "NET_BIND_SERVICE": (Severity.LOW, "bind ports below 1024"),
    "BPF": (Severity.HIGH, "load BPF programs"),
    "SYS_RAWIO": (Severity.CRITICAL, "raw I/O on devices and ports"),
}


def _norm(cap: str) -> str:
    cap = cap.upper()
    return cap[4:] if cap.startswith("CAP_") else cap


@rule(
    id="capabilities-added",
    cis="5.4",
    title="Container is granted added Linux capabilities",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""Each added capability lifts a kernel restriction. NET_ADMIN lets a container rewrite
    firewall rules and routes; NET_RAW lets it spoof traffic on the bridge; SYS_ADMIN and ALL are
    container escapes.""",
    beyond_cis="""Severity follows the most dangerous capability added, and the context it acts in:
    NET_ADMIN or NET_RAW on the host network (or joined to a host-network container) and SYS_PTRACE
    with the host's PID namespace are critical, with the reason stated in the finding.""",
)
def capabilities_added(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    caps = sorted({_norm(c) for c in container.cap_add})
    if not caps:
        return
    known = {c: DANGEROUS_CAPS[c] for c in caps if c in DANGEROUS_CAPS}
    severity = max((sev for sev, _ in known.values()), key=lambda s: s.rank, default=Severity.MEDIUM)
    if severity.rank < Severity.MEDIUM.rank and set(caps) - set(known):
        severity = Severity.MEDIUM
    severity, raised, sentence = context.apply(severity, context.for_capabilities(container, set(caps), ctx))
    drops = " ".join(f"--cap-add {c}" for c in caps)
    yield Hit(
        evidence={
            "HostConfig.CapAdd": list(container.cap_add),
            "HostConfig.CapDrop": list(container.cap_drop),
            "why": {c: why for c, (_, why) in known.items()},
        }
        | raised,
        remediation=context.lead(
            sentence,
            advice(
                f"Remove the added capabilities from {where(container)}; if one is truly needed, drop everything else and add back only that one.",
                run=f"remove {drops}; prefer --cap-drop ALL plus the single --cap-add it needs",
                compose="delete cap_add: [" + ", ".join(caps) + "]; prefer cap_drop: [ALL]",
            ),
        ),
        severity=severity,
    )


@rule(
    id="privileged",
    cis="5.5",
    title="Container runs privileged",
    severity=Severity.CRITICAL,
    subject=SubjectType.CONTAINER,
    rationale="""--privileged grants every capability, every host device and disables seccomp and
    AppArmor: root in the container is root on the host, firewall and network stack included.""",
)
def privileged(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    if container.privileged:
        yield Hit(
            evidence={"HostConfig.Privileged": True},
            remediation=advice(
                f"Run {where(container)} unprivileged, granting the one capability or device it needs.",
                run="remove --privileged; add the specific --cap-add X or --device PATH",
                compose="delete privileged: true; add cap_add: [X] or devices: [PATH]",
            ),
        )
