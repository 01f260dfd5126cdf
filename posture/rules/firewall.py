"""The host firewall Docker bypasses: published ports the firewall means to block.

Docker DNATs a published port to the container in the nat table's PREROUTING, so the
packet is forwarded and never crosses the INPUT chain where ufw, firewalld and plain
INPUT rules filter. Only ``DOCKER-USER`` (in FORWARD, before Docker's own rules) or the
bind address can restrict it. Judged from ``iptables-save`` / ``nft list ruleset``
output read over SSH (opt-in per host); where they cannot be read the finding says so.
"""

from __future__ import annotations

from collections.abc import Iterator

from posture.collector.snapshot import Container, Firewall, FirewallRule

from .base import Check, Hit, RuleContext, Severity, SubjectType, rule
from .bindings import EffectiveBinding, effective, is_any, is_loopback
from .ports import SENSITIVE_PORTS
from .remediation import advice, loopback_spec, where


def _in_ports(port: int, ports: tuple[str, ...]) -> bool:
    for spec in ports:
        low, _, high = spec.partition("-")
        if low.isdigit() and int(low) <= port <= int(high if high.isdigit() else low):
            return True
    return False


def _matches(rule: FirewallRule, protocol: str, port: int) -> bool:
    return rule.protocol in ("", protocol) and (not rule.ports or _in_ports(port, rule.ports))


def _full(rule: FirewallRule) -> bool:
    """Admits everyone: no source, interface or destination narrows it."""
    return not (rule.source or rule.in_interface or rule.destination or rule.other_conditions)


def input_verdict(firewall: Firewall, protocol: str, port: int) -> tuple[str, list[FirewallRule]]:
    """("open", rules) when INPUT admits the port from anywhere, ("partial", rules) when only
    from some sources or interfaces, ("blocked", []) when the default deny applies."""
    if not firewall.input_default_deny:
        return "open", []
    allows = [r for r in firewall.input_allows if _matches(r, protocol, port)]
    if any(_full(r) for r in allows):
        return "open", [r for r in allows if _full(r)]
    return ("partial", allows) if allows else ("blocked", [])


def forwarding(firewall: Firewall, eff: EffectiveBinding, running: bool) -> tuple[str, FirewallRule | None]:
    """Whether Docker forwards the port past INPUT: ("dnat", rule), ("when started", None) or ("", None)."""
    protocol, port = eff.configured.protocol, eff.host_port
    for dnat in firewall.docker_forwards:
        if port is not None and _matches(dnat, protocol, port) and dnat.ports:
            if dnat.destination and is_loopback(dnat.destination.lstrip("!")):
                continue  # bound to loopback: not reachable from outside
            return "dnat", dnat
    if not running and firewall.docker_chains:
        return "when started", None
    return "", None


def docker_user_restrictions(firewall: Firewall, protocol: str, container_port: int, host_port: int) -> list[FirewallRule]:
    """DOCKER-USER rules that drop or reject some of this port's forwarded traffic. In
    DOCKER-USER the packet is already DNATed: ``--dport`` is the container port, the host
    port is ``--ctorigdstport``."""
    found = []
    for r in firewall.docker_user:
        if r.action not in ("drop", "reject") or r.protocol not in ("", protocol):
            continue
        if r.orig_ports and not _in_ports(host_port, r.orig_ports):
            continue
        if r.ports and not _in_ports(container_port, r.ports):
            continue
        found.append(r)
    return found


def _describe_input(firewall: Firewall, verdict: str, allows: list[FirewallRule], protocol: str, port: int) -> str:
    frontend = f"{' and '.join(firewall.frontends)} " if firewall.frontends else ""
    deny = f"the host firewall {frontend}denies new inbound traffic by default ({firewall.input_deny_by})"
    if verdict == "blocked":
        return f"{deny} and no INPUT rule accepts {protocol}/{port}"
    where_from = "; ".join(
        " ".join(
            p
            for p in (f"from {r.source}" if r.source else "", f"on {r.in_interface}" if r.in_interface else "", f"to {r.destination}" if r.destination else "")
            if p
        )
        or "under extra conditions"
        for r in allows
    )
    return f"{deny} and INPUT accepts {protocol}/{port} only {where_from}"


@rule(
    id="firewall-bypassed-by-docker",
    title="Published port bypasses the host firewall",
    severity=Severity.HIGH,
    subject=SubjectType.CONTAINER,
    verification=Check.HOST_ACCESS,
    rationale="""ufw, firewalld and INPUT rules filter traffic addressed to the host. Docker DNATs a
    published port straight to the container, so the packet is forwarded and never meets INPUT: a
    port the firewall means to block is open to every network the host is on. Only a DOCKER-USER
    rule or publishing on a specific address restricts it. Critical for a database, cache or broker
    port; low when a DOCKER-USER rule already restricts it.""",
    beyond_cis="""CIS 5.14 asks for specific bind addresses; this reads the host firewall itself
    (iptables-save, nft list ruleset; over SSH, opt-in per host) and names the ports it fails to protect.""",
)
def firewall_bypassed(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    state = ctx.snapshot.host
    firewall = state.firewall if state else None
    if firewall is None or not firewall.input_default_deny:
        return
    for eff in effective(container, ctx):
        binding = eff.configured
        if not eff.published or eff.loopback_only or eff.host_port is None:
            continue
        verdict, allows = input_verdict(firewall, binding.protocol, eff.host_port)
        if verdict == "open":
            continue
        how, dnat = forwarding(firewall, eff, container.running)
        if not how:
            continue
        restricting = docker_user_restrictions(firewall, binding.protocol, binding.container_port, eff.host_port)
        service = SENSITIVE_PORTS.get(binding.container_port)
        severity = Severity.LOW if restricting else (Severity.CRITICAL if service else Severity.HIGH)
        port = f"{eff.host_port}/{binding.protocol}"
        external = "<external-interface>"
        allowed = next((r.source for r in allows if r.source and not r.source.startswith("!")), "")
        keep = f" ! -s {allowed}" if allowed else ""
        user_rule = f"iptables -I DOCKER-USER -i {external}{keep} -p {binding.protocol} -m conntrack --ctorigdstport {eff.host_port} -j DROP"
        input_text = _describe_input(firewall, verdict, allows, binding.protocol, eff.host_port)
        forwarded = f"Docker forwards it past INPUT ({dnat.text})" if dnat else "Docker will forward it past INPUT as soon as the container starts"
        restricted = (
            "DOCKER-USER restricts it: " + "; ".join(f"`{r.text}`" for r in restricting) + ". Check that this covers every external interface and source."
            if restricting
            else "No DOCKER-USER rule restricts it."
        )
        yield Hit(
            key=f"{binding.container_port}/{binding.protocol}:{binding.host_ip or '*'}",
            evidence={
                "published": binding.spec,
                "effective_addresses": list(eff.addresses),
                "host_port": port,
                "service": service or "—",
                "input": input_text,
                "input_rules": [r.text for r in allows],
                "docker_forward": dnat.text if dnat else how,
                "docker_user": [r.text for r in restricting] or "no rule restricts this port",
                "firewall_read_with": firewall.source,
                "frontends": list(firewall.frontends) or ["plain INPUT rules"],
            },
            remediation=advice(
                f"Port {port} of {where(container)}{f' ({service})' if service else ''}: {input_text}, but {forwarded}. {restricted} "
                "Either publish it on the one address its clients use, or filter the forwarded traffic in DOCKER-USER, "
                "the chain Docker leaves to the operator (ufw and firewalld rules never see it).",
                run=f"replace -p {binding.spec} with -p {loopback_spec(binding)} (or an internal address); or on the host: {user_rule}",
                compose=f'under ports:, replace "{binding.spec}" with "{loopback_spec(binding)}"',
                note="With ufw, `ufw route` rules only apply to forwarded traffic once DOCKER-USER sends it to ufw-user-forward; a plain `ufw deny` does not.",
            ),
            severity=severity,
            exposed=not restricting,
        )


@rule(
    id="firewall-unread",
    title="Host firewall could not be read",
    severity=Severity.INFO,
    subject=SubjectType.HOST,
    verification=Check.HOST_ACCESS,
    rationale="""Whether the host firewall protects the published ports cannot be judged without its
    rules: Docker's forwarding bypasses INPUT, so a firewall that looks closed may not be. Posture
    reads them with iptables-save and nft list ruleset over SSH (or sudo -n for exactly those) and
    says so when it cannot, rather than guess.""",
    beyond_cis="Posture's own reading; lists the ports whose filtering is unknown.",
)
def firewall_unread(ctx: RuleContext) -> Iterator[Hit]:
    state = ctx.snapshot.host
    if state is None or state.firewall is not None:
        return
    ports = sorted(
        {
            f"{c.name} {eff.configured.spec}"
            for c in ctx.snapshot.containers
            for eff in effective(c, ctx)
            if eff.published and not eff.loopback_only and any(is_any(a) or not is_loopback(a) for a in eff.addresses)
        }
    )
    if not ports:
        return
    yield Hit(
        evidence={"error": state.firewall_error, "ports_not_judged": ports},
        remediation=advice(
            "Posture cannot tell whether the host firewall means to block these published ports, which Docker forwards past INPUT. "
            "Register the host as ssh:// with a user that may read the rules (root, or `sudo -n` for exactly `iptables-save` and "
            "`nft list ruleset`), or check DOCKER-USER by hand: iptables -L DOCKER-USER -n -v.",
        ),
    )
