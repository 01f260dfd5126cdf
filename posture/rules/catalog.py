"""Every rule in one place, and the one function that applies them to a snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from posture.collector.snapshot import Container, HostSnapshot, frozen_map

from . import capabilities, daemon, firewall, mounts, namespaces, networks, ports, reachability
from .base import FindingSpec, Hit, Rule, RuleContext, SubjectType

FAMILIES = (namespaces, ports, capabilities, mounts, networks, daemon, reachability, firewall)
RULES: tuple[Rule, ...] = tuple(value for module in FAMILIES for value in vars(module).values() if isinstance(value, Rule))
BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
KNOWN_GAPS = daemon.KNOWN_GAPS

if len(BY_ID) != len(RULES):  # pragma: no cover - a programming error caught at import
    raise RuntimeError("duplicate rule id in the catalog")


def _spec(rule: Rule, hit: Hit, *, subject_type: SubjectType, key: str, name: str, running: bool | None, container: Container | None = None) -> FindingSpec:
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
        image=container.image if container else "",
        compose_project=container.compose_project if container else "",
    )


@dataclass(frozen=True)
class Evaluation:
    """What the rules concluded about one snapshot, and which rules could not conclude."""

    specs: list[FindingSpec]
    # rule id → what it raised. A failed rule's findings are neither opened nor resolved:
    # one broken rule (or one odd container) must not hide the others or clear history.
    errors: Mapping[str, str] = field(default_factory=dict)


def _apply(rule: Rule, ctx: RuleContext, host_name: str) -> list[FindingSpec]:
    snapshot = ctx.snapshot
    if rule.subject is SubjectType.CONTAINER:
        return [
            _spec(rule, h, subject_type=rule.subject, key=c.subject_key, name=c.name, running=c.running, container=c)
            for c in snapshot.containers
            for h in rule(c, ctx)
        ]
    if rule.subject is SubjectType.NETWORK:
        return [_spec(rule, h, subject_type=rule.subject, key=n.name, name=n.name, running=None) for n in snapshot.networks for h in rule(n, ctx)]
    return [_spec(rule, h, subject_type=rule.subject, key="daemon", name=host_name or snapshot.engine.name, running=None) for h in rule(ctx)]


def _ordered(specs: Iterable[FindingSpec]) -> list[FindingSpec]:
    # Two containers can share a subject key only if one replaced the other between list
    # and inspect; keep one finding per fingerprint so reconciliation stays a bijection.
    unique = {s.fingerprint: s for s in specs}
    return sorted(unique.values(), key=lambda s: (-s.severity.rank, s.rule_id, s.subject_key, s.key))


def evaluate_all(snapshot: HostSnapshot, host_name: str = "", rules: Iterable[Rule] = RULES) -> Evaluation:
    """Apply ``rules`` to every subject of ``snapshot``; a rule that raises is reported, not fatal.

    Stopped containers are judged on their configuration too: they can start at any
    time, and the finding carries ``running=False``.
    """
    ctx = RuleContext(snapshot=snapshot)
    specs: list[FindingSpec] = []
    errors: dict[str, str] = {}
    for rule in rules:
        try:
            specs += _apply(rule, ctx, host_name)
        except Exception as exc:  # a rule bug or an answer no rule foresaw: fail that rule only
            errors[rule.id] = f"{type(exc).__name__}: {exc}"[:500]
    return Evaluation(specs=_ordered(specs), errors=errors)


def evaluate(snapshot: HostSnapshot, host_name: str = "", rules: Iterable[Rule] = RULES) -> list[FindingSpec]:
    """Strict form for tools and tests: a rule that raises raises."""
    ctx = RuleContext(snapshot=snapshot)
    return _ordered(spec for rule in rules for spec in _apply(rule, ctx, host_name))
