"""The engine itself: how it is reached and how it is configured."""

from __future__ import annotations

from collections.abc import Iterator

from .base import Hit, RuleContext, Severity, SubjectType, rule
from .remediation import advice


def _warnings(ctx: RuleContext, *needles: str) -> list[str]:
    return [w for w in ctx.snapshot.engine.warnings if all(n in w for n in needles)]


@rule(
    id="daemon-tcp-no-tls",
    cis="2.7",
    title="Engine API reachable over TCP without TLS",
    severity=Severity.CRITICAL,
    subject=SubjectType.DAEMON,
    rationale="""A plain TCP engine API gives root on the host to anyone who can reach the port: no
    password, no certificate.""",
    beyond_cis="Detected both from the engine's own warnings and from how Posture itself connected.",
)
def tcp_no_tls(ctx: RuleContext) -> Iterator[Hit]:
    conn = ctx.snapshot.connection
    warnings = _warnings(ctx, "without encryption")
    if warnings or (conn.scheme == "tcp" and not conn.tls):
        yield Hit(
            evidence={"connected_via": conn.address, "tls": conn.tls, "Warnings": warnings},
            remediation=advice(
                "Serve the API over TLS with client verification, or only on the unix socket and reach it over SSH.",
                run="dockerd --tlsverify --tlscacert ca.pem --tlscert server.pem --tlskey server-key.pem -H tcp://0.0.0.0:2376",
                compose='daemon.json: {"tlsverify": true, "tlscacert": "...", "tlscert": "...", "tlskey": "...", "hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"]}',
                note="Posture can poll over ssh:// instead, needing no TCP listener at all.",
            ),
            exposed=True,
        )


@rule(
    id="daemon-tls-no-client-verify",
    cis="2.7",
    title="Engine API over TLS without client certificate verification",
    severity=Severity.HIGH,
    subject=SubjectType.DAEMON,
    rationale="""TLS without --tlsverify encrypts the traffic but lets any client in: the API is still
    root on the host for anyone who can reach it.""",
)
def tls_no_verify(ctx: RuleContext) -> Iterator[Hit]:
    conn = ctx.snapshot.connection
    warnings = _warnings(ctx, "without TLS client verification")
    if warnings or (conn.tls and not conn.client_cert):
        yield Hit(
            evidence={"connected_via": conn.address, "client_certificate_used": conn.client_cert, "Warnings": warnings},
            remediation=advice(
                "Require client certificates signed by your CA.",
                run="dockerd --tlsverify --tlscacert ca.pem ...",
                compose='daemon.json: {"tlsverify": true}',
            ),
            exposed=True,
        )


@rule(
    id="insecure-registries",
    cis="2.5",
    title="Insecure registries configured",
    severity=Severity.MEDIUM,
    subject=SubjectType.DAEMON,
    rationale="""Images pulled from an insecure registry travel without TLS verification; anyone on
    the path can substitute them.""",
)
def insecure_registries(ctx: RuleContext) -> Iterator[Hit]:
    registries = list(ctx.snapshot.engine.insecure_registries)
    if registries:
        yield Hit(
            evidence={"RegistryConfig.insecure": registries},
            remediation=advice(
                "Give each registry a TLS certificate and remove it from insecure-registries.",
                run="remove --insecure-registry " + " --insecure-registry ".join(registries),
                compose='daemon.json: delete "insecure-registries"',
            ),
        )


@rule(
    id="userns-remap-off",
    cis="2.9",
    title="User namespace remapping is not enabled",
    severity=Severity.LOW,
    subject=SubjectType.DAEMON,
    rationale="""Without user namespace remapping, root in a container is uid 0 on the host: any
    escape is a root escape.""",
)
def userns_off(ctx: RuleContext) -> Iterator[Hit]:
    engine = ctx.snapshot.engine
    if not engine.userns_remap and not engine.rootless:
        yield Hit(
            evidence={"SecurityOptions": list(engine.security_options)},
            remediation=advice(
                "Enable user namespace remapping, or run the engine rootless.",
                run="dockerd --userns-remap=default",
                compose='daemon.json: {"userns-remap": "default"}',
            ),
        )


@rule(
    id="no-authorization-plugin",
    cis="2.12",
    title="No authorization plugin restricts engine API calls",
    severity=Severity.INFO,
    subject=SubjectType.DAEMON,
    rationale="""Without an authorization plugin every client that reaches the API may do everything;
    a plugin can refuse, for example, privileged containers or host networking.""",
)
def no_authz(ctx: RuleContext) -> Iterator[Hit]:
    if not ctx.snapshot.engine.authorization_plugins:
        yield Hit(
            evidence={"Plugins.Authorization": None},
            remediation=advice(
                "Consider an authorization plugin (for example OPA's) that denies --privileged, --network host and socket mounts.",
                run="dockerd --authorization-plugin=opa-docker-authz",
            ),
        )


@rule(
    id="daemon-rootful",
    cis="2.1",
    title="Engine runs as root (not rootless)",
    severity=Severity.INFO,
    subject=SubjectType.DAEMON,
    rationale="""A rootless engine confines the daemon and every container to an unprivileged user:
    the strongest mitigation for everything else in this catalog. Its absence is informational.""",
)
def rootful(ctx: RuleContext) -> Iterator[Hit]:
    engine = ctx.snapshot.engine
    if not engine.rootless:
        yield Hit(
            evidence={"SecurityOptions": list(engine.security_options), "rootless": False},
            remediation=advice("Where the workload allows it, run the engine in rootless mode.", run="dockerd-rootless-setuptool.sh install"),
        )


@rule(
    id="swarm-mode",
    cis="5.1",
    title="Swarm mode is enabled",
    severity=Severity.LOW,
    subject=SubjectType.DAEMON,
    rationale="""Swarm mode opens management (2377), gossip (7946) and overlay (4789) ports on the
    host; if the host is not meant to be in a swarm they are needless exposure.""",
)
def swarm(ctx: RuleContext) -> Iterator[Hit]:
    engine = ctx.snapshot.engine
    if engine.swarm_state not in ("inactive", ""):
        yield Hit(
            evidence={"Swarm.LocalNodeState": engine.swarm_state, "Swarm.ControlAvailable": engine.swarm_manager},
            remediation=advice("Leave the swarm if this host does not need it.", run="docker swarm leave"),
            exposed=True,
        )


# Checks the Engine API cannot see: documented, and shown as gaps in the catalog.
KNOWN_GAPS: tuple[dict[str, str], ...] = (
    {
        "cis": "2.16",
        "title": "Userland proxy disabled",
        "why": "dockerd's --userland-proxy setting is not reported by /info; read /etc/docker/daemon.json on the host.",
    },
    {"cis": "2.4", "title": "Docker allowed to make changes to iptables", "why": "The --iptables flag is not reported by the API."},
    {
        "cis": "",
        "title": "DOCKER-USER chain filters published ports",
        "why": "Firewall rules live in the host's netfilter tables, outside the API; for ssh:// hosts with host listeners on, "
        "Posture reads them (iptables-save, nft list ruleset) and reports ports they fail to protect (firewall-bypassed-by-docker).",
    },
    {
        "cis": "",
        "title": "Host services listening on all interfaces",
        "why": "Sockets opened by host processes are outside the Engine API; hosts with host listeners on have them read "
        "(ss over SSH, or /proc/net locally) and judged by the reachability rules.",
    },
)
