"""The risk score: a pure function from open findings to 0–100 and what contributes.

Each open finding carries a weight, in points out of 100:

    weight = Severity.points × (0.5 if the container is stopped) × (1.25 if exposed)

and removes that share of what is left of the host's safety:

    score = 100 × (1 − Π (1 − weight / 100))

So one exposed critical finding scores 50, two score 75, and no pile of low findings
ever reaches 100. Info findings weigh nothing. Accepted findings are not passed in
while their acceptance is valid. See docs/risk.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from posture.rules import Severity

STOPPED_FACTOR = 0.5
EXPOSED_FACTOR = 1.25


@dataclass(frozen=True)
class RiskItem:
    rule_id: str
    severity: str
    running: bool | None
    exposed: bool


@dataclass(frozen=True)
class Contribution:
    rule_id: str
    severity: str
    count: int
    points: float


@dataclass(frozen=True)
class Risk:
    score: int
    breakdown: tuple[Contribution, ...]

    def as_json(self) -> list[dict[str, object]]:
        return [{"rule": c.rule_id, "severity": c.severity, "count": c.count, "points": round(c.points, 1)} for c in self.breakdown]


def weight(item: RiskItem) -> float:
    points = Severity(item.severity).points
    if item.running is False:
        points *= STOPPED_FACTOR
    if item.exposed:
        points *= EXPOSED_FACTOR
    return min(points, 95.0)


def score(items: Iterable[RiskItem]) -> Risk:
    safety = 1.0
    by_rule: dict[tuple[str, str], list[float]] = defaultdict(list)
    for item in items:
        w = weight(item)
        safety *= 1 - w / 100
        by_rule[(item.rule_id, item.severity)].append(w)
    breakdown = sorted(
        (Contribution(rule_id=r, severity=s, count=len(ws), points=sum(ws)) for (r, s), ws in by_rule.items()),
        key=lambda c: (-c.points, c.rule_id),
    )
    return Risk(score=min(100, math.floor(100 * (1 - safety) + 0.5)), breakdown=tuple(breakdown))
