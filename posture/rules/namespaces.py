"""Namespaces shared with the host: the container stops being a separate machine."""

from __future__ import annotations

from collections.abc import Iterator

from posture.collector.snapshot import Container

from . import context
from .base import Hit, RuleContext, Severity, SubjectType, rule
from .remediation import advice, loopback_flags, where


@rule(
    id="host-network",
    cis="5.10",
    title="Container shares the host's network namespace",
    severity=Severity.HIGH,
    subject=SubjectType.CONTAINER,
    rationale="""With the host network a container sees every interface of the host, binds any
    host port, reaches every service listening on loopback (databases, the kubelet, metadata
    proxies) and bypasses Docker's network isolation and port mapping entirely.""",
    beyond_cis="""Also follows --network container:<id> chains: a container that joins the namespace
    of a host-network container is on the host network too. docker-bench-security misses this.
    Critical when the container may also reconfigure that network (privileged, NET_ADMIN, NET_RAW).""",
)
def host_network(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    chain = ctx.network_chain(container)
    owner = chain[-1]
    if owner.network_mode != "host":
        return
    via = [f"{c.name} (NetworkMode={c.network_mode})" for c in chain]
    flag = "--network host" if owner is container else f"--network {container.network_mode}"
    run_ports, compose_ports = loopback_flags(owner)
    severity, raised, sentence = context.apply(host_network.severity, context.for_host_network(container, ctx))
    yield Hit(
        evidence={"HostConfig.NetworkMode": container.network_mode, "namespace_chain": via} | raised,
        remediation=context.lead(
            sentence,
            advice(
                f"Run {where(container)} on a user-defined bridge network and publish only the ports it serves, on loopback"
                + ("" if owner is container else f" (it inherits the host network from '{owner.name}', fix that one first)")
                + ".",
                run=f"replace {flag} with --network <app-net> {run_ports}",
                compose=f"delete network_mode: host (or service:…), add networks: [app-net] and ports: {compose_ports}",
            ),
        ),
        severity=severity,
        exposed=True,
    )


@rule(
    id="shared-network-namespace",
    title="Container joins another container's network namespace",
    severity=Severity.LOW,
    subject=SubjectType.CONTAINER,
    rationale="""--network container:<other> gives this container the other's interfaces, ports and
    loopback services: its exposure is whatever the other container's is.""",
    beyond_cis="CIS has no item; the transitive host case is reported under 5.10.",
)
def shared_network_namespace(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    if not container.network_mode.startswith("container:"):
        return
    chain = ctx.network_chain(container)
    if chain[-1].network_mode == "host":
        return  # reported, more severely, by host-network
    target = chain[1].name if len(chain) > 1 else container.network_mode.split(":", 1)[1]
    yield Hit(
        evidence={"HostConfig.NetworkMode": container.network_mode, "shares_with": target},
        remediation=advice(
            f"Give {where(container)} its own network namespace unless it is a deliberate sidecar of '{target}'.",
            run=f"replace --network {container.network_mode} with --network <app-net>",
            compose=f"replace network_mode: service:{target} with networks: [app-net]",
        ),
    )


def _namespace_rule(attr: str, field: str, flag: str, compose: str, what: str, base: Severity) -> object:
    def check(container: Container, ctx: RuleContext) -> Iterator[Hit]:
        if getattr(container, attr) == "host":
            raises = context.for_host_pid(container) if attr == "pid_mode" else []
            severity, raised, sentence = context.apply(base, raises)
            yield Hit(
                evidence={f"HostConfig.{field}": "host", "flag": f"--{flag}=host"} | raised,
                remediation=context.lead(
                    sentence,
                    advice(
                        f"Run {where(container)} without the host {what} namespace.",
                        run=f"remove --{flag}=host",
                        compose=f"delete {compose}: host",
                    ),
                ),
                severity=severity if raised else None,
            )

    check.__module__ = __name__
    return check


host_pid = rule(
    id="host-pid",
    cis="5.16",
    title="Container shares the host's process namespace",
    severity=Severity.HIGH,
    subject=SubjectType.CONTAINER,
    rationale="""With --pid=host the container sees and can signal every host process, read their
    environment (secrets) through /proc, and with ptrace attach to them.""",
    beyond_cis="Critical when the container also holds SYS_PTRACE or runs privileged: it can then attach to any host process.",
)(_namespace_rule("pid_mode", "PidMode", "pid", "pid", "PID", Severity.HIGH))

host_ipc = rule(
    id="host-ipc",
    cis="5.17",
    title="Container shares the host's IPC namespace",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""With --ipc=host the container can read and write the shared memory of host
    processes.""",
)(_namespace_rule("ipc_mode", "IpcMode", "ipc", "ipc", "IPC", Severity.MEDIUM))

host_uts = rule(
    id="host-uts",
    cis="5.21",
    title="Container shares the host's UTS namespace",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""With --uts=host the container can change the host's hostname and domain name, which
    other services trust for identity and logging.""",
)(_namespace_rule("uts_mode", "UTSMode", "uts", "uts", "UTS", Severity.MEDIUM))

host_userns = rule(
    id="host-userns",
    cis="5.31",
    title="Container shares the host's user namespace",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""--userns=host turns off user-namespace remapping for this container: root inside is
    root on the host.""",
)(_namespace_rule("userns_mode", "UsernsMode", "userns", "userns_mode", "user", Severity.MEDIUM))
