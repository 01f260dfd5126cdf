"""The shape of a rule and of what it concludes. Pure Python, no Django."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from posture.collector.snapshot import Container, HostSnapshot, Network, frozen_map


@dataclass(frozen=True)
class _Traits:
    rank: int  # higher is worse: sorting and "at least" filters
    points: float  # risk weight of one open finding (posture/risk.py)
    colour: str  # badges, charts and PDFs (static/posture/posture.css mirrors it, checked by a test)
    sarif_level: str  # SARIF 2.1.0 result level


_TRAITS = {
    "critical": _Traits(rank=4, points=40.0, colour="#7f1d1d", sarif_level="error"),
    "high": _Traits(rank=3, points=20.0, colour="#c2410c", sarif_level="error"),
    "medium": _Traits(rank=2, points=8.0, colour="#92400e", sarif_level="warning"),
    "low": _Traits(rank=1, points=2.0, colour="#1d4ed8", sarif_level="note"),
    "info": _Traits(rank=0, points=0.0, colour="#475569", sarif_level="note"),
}


class Severity(enum.StrEnum):
    """The one severity vocabulary: every rank, weight, colour and SARIF level is read from here.

    Members are listed worst first, so iterating gives display order.
    """

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _TRAITS[self.value].rank

    @property
    def points(self) -> float:
        return _TRAITS[self.value].points

    @property
    def colour(self) -> str:
        return _TRAITS[self.value].colour

    @property
    def sarif_level(self) -> str:
        return _TRAITS[self.value].sarif_level

    @property
    def label(self) -> str:
        return self.value.capitalize()

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """``(value, label)`` pairs for model fields and forms."""
        return [(s.value, s.label) for s in cls]

    @classmethod
    def values(cls) -> list[str]:
        return [s.value for s in cls]

    @classmethod
    def at_least(cls, severity: str) -> list[Severity]:
        """This severity and every worse one."""
        floor = cls(severity).rank
        return [s for s in cls if s.rank >= floor]


class SubjectType(enum.StrEnum):
    CONTAINER = "container"
    NETWORK = "network"
    DAEMON = "daemon"
    HOST = "host"

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(s.value, s.value.capitalize()) for s in cls]


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
    # The container's image and compose project (empty for networks and the daemon): the
    # explorer and exception scopes filter on them.
    image: str = ""
    compose_project: str = ""

    @property
    def fingerprint(self) -> str:
        """Host-local identity: rule + subject + item. The host completes it."""
        return "|".join((self.rule_id, self.subject_type.value, self.subject_key, self.key))
