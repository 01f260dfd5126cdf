"""Every rule in one place, and the one function that applies them to a snapshot."""

from __future__ import annotations

from collections.abc import Iterable

from posture.collector.snapshot import HostSnapshot, frozen_map

from . import capabilities, daemon, firewall, mounts, namespaces, networks, ports, reachability
from .base import FindingSpec, Hit, Rule, RuleContext, SubjectType

FAMILIES = (namespaces, ports, capabilities, mounts, networks, daemon, reachability, firewall)
RULES: tuple[Rule, ...] = tuple(value for module in FAMILIES for value in vars(module).values() if isinstance(value, Rule))
BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
KNOWN_GAPS = daemon.KNOWN_GAPS

if len(BY_ID) != len(RULES):  # pragma: no cover - a programming error caught at import
    raise RuntimeError("duplicate rule id in the catalog")


def get(rule_id: str) -> Rule | None:
    return BY_ID.get(rule_id)


def _spec(rule: Rule, hit: Hit, *, subject_type: SubjectType, key: str, name: str, running: bool | None) -> FindingSpec:
    return FindingSpec(
        rule_id=rule.id,
        cis=rule.cis,
        severity=hit.severity or rule.severity,
        subject_type=subject_type,
        subject_key=key,
        subject_name=name,
        title=rule.title,
        evidence=frozen_map(hit.evidence),
        remediation=hit.remediation,
        running=running,
        key=hit.key,
        exposed=hit.exposed,
    )


def evaluate(snapshot: HostSnapshot, host_name: str = "", rules: Iterable[Rule] = RULES) -> list[FindingSpec]:
    """Apply ``rules`` to every subject of ``snapshot``.

    Stopped containers are judged on their configuration too: they can start at any
    time, and the finding carries ``running=False``.
    """
    ctx = RuleContext(snapshot=snapshot, host_name=host_name)
    specs: list[FindingSpec] = []
    for rule in rules:
        if rule.subject is SubjectType.CONTAINER:
            for c in snapshot.containers:
                specs += [_spec(rule, h, subject_type=rule.subject, key=c.subject_key, name=c.name, running=c.running) for h in rule(c, ctx)]
        elif rule.subject is SubjectType.NETWORK:
            for n in snapshot.networks:
                specs += [_spec(rule, h, subject_type=rule.subject, key=n.name, name=n.name, running=None) for h in rule(n, ctx)]
        else:
            specs += [_spec(rule, h, subject_type=rule.subject, key="daemon", name=host_name or snapshot.engine.name, running=None) for h in rule(ctx)]
    # Two containers can share a subject key only if one replaced the other between list
    # and inspect; keep one finding per fingerprint so reconciliation stays a bijection.
    unique = {s.fingerprint: s for s in specs}
    return sorted(unique.values(), key=lambda s: (-s.severity.rank, s.rule_id, s.subject_key, s.key))
