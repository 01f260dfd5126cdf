"""The shape of a rule and of what it concludes. Pure Python, no Django."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from posture.collector.snapshot import Container, HostSnapshot, Network, frozen_map


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; used for sorting and ``at_least`` filters."""
        return {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}[self.value]

    @property
    def label(self) -> str:
        return self.value.capitalize()


class SubjectType(enum.StrEnum):
    CONTAINER = "container"
    NETWORK = "network"
    DAEMON = "daemon"
    HOST = "host"


class Check(enum.StrEnum):
    """Can the Engine API alone prove the finding, or does it take a shell on the host?"""

    API = "api"
    HOST_ACCESS = "host-access"


@dataclass(frozen=True)
class Hit:
    """One thing a rule found on one subject."""

    evidence: Mapping[str, Any]
    remediation: str
    # Tells apart several hits of one rule on one subject (a port, a mount path).
    key: str = ""
    severity: Severity | None = None
    # Reachable from outside the host (bound on every interface, host network...).
    exposed: bool = False


@dataclass(frozen=True)
class RuleContext:
    snapshot: HostSnapshot
    host_name: str = ""
    # Facts several rules derive from the whole snapshot, computed once per evaluation.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def network_chain(self, container: Container) -> list[Container]:
        """Follow ``container:<id>`` network modes to the container that owns the namespace."""
        chain = [container]
        current = container
        while current.network_mode.startswith("container:"):
            target = self.snapshot.container(current.network_mode.split(":", 1)[1])
            if target is None or target in chain:
                break
            chain.append(target)
            current = target
        return chain

    def networks_of(self, container: Container) -> list[Network]:
        found = (self.snapshot.network(a.network_id) or self.snapshot.network(a.network) for a in container.attachments)
        return [n for n in found if n is not None]


ContainerCheck = Callable[[Container, RuleContext], Iterable[Hit]]
NetworkCheck = Callable[[Network, RuleContext], Iterable[Hit]]
DaemonCheck = Callable[[RuleContext], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    subject: SubjectType
    rationale: str
    check: Callable[..., Iterable[Hit]]
    cis: str | None = None
    family: str = ""
    verification: Check = Check.API
    # What the rule sees that the CIS item does not (or where the reference tool errs).
    beyond_cis: str = ""

    do_not_call_in_templates = True  # a Rule is callable; templates read its metadata

    def __call__(self, *args: Any) -> Iterable[Hit]:
        return self.check(*args)


def rule(
    *,
    id: str,
    title: str,
    severity: Severity,
    subject: SubjectType,
    rationale: str,
    cis: str | None = None,
    beyond_cis: str = "",
    verification: Check = Check.API,
) -> Callable[[Callable[..., Iterable[Hit]]], Rule]:
    """Declare a rule: the metadata sits beside the small function that checks it."""

    def wrap(fn: Callable[..., Iterable[Hit]]) -> Rule:
        family = fn.__module__.rsplit(".", 1)[-1]
        return Rule(
            id=id,
            title=title,
            severity=severity,
            subject=subject,
            rationale=" ".join(rationale.split()),
            check=fn,
            cis=cis,
            family=family,
            verification=verification,
            beyond_cis=" ".join(beyond_cis.split()),
        )

    return wrap


@dataclass(frozen=True)
class FindingSpec:
    """A conclusion about one subject, ready to be reconciled with stored findings."""

    rule_id: str
    severity: Severity
    subject_type: SubjectType
    subject_key: str
    subject_name: str
    title: str
    cis: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=lambda: frozen_map({}))
    remediation: str = ""
    running: bool | None = None
    key: str = ""
    exposed: bool = False

    @property
    def fingerprint(self) -> str:
        """Host-local identity: rule + subject + item. The host completes it."""
        return "|".join((self.rule_id, self.subject_type.value, self.subject_key, self.key))
