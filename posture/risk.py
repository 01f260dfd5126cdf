"""The risk score: a pure function from counted findings to 0–100, what contributes, and
the keys that rank hosts with equal scores.

Each counted finding (open, or accepted with an expired acceptance) carries points:

    points = Severity.points × (0.5 if the container is stopped) × (1.25 if exposed)

and a host's points add up, P = Σ points. The score maps P onto 0–100 without a ceiling
that realistic hosts reach:

    score = 100 × P / (P + HALF_POINTS)        (rounded; at least 1 when P > 0)

so 100 points (two exposed criticals) score 50, and each further finding still moves
the score: 10 criticals score 80, 5 criticals and 20 highs 86. Hosts with equal scores
rank by exposed criticals, then criticals, then highs, then points. See docs/risk.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from posture.rules import Severity

STOPPED_FACTOR = 0.5
EXPOSED_FACTOR = 1.25
# The points at which a host scores 50: two exposed criticals, five highs.
HALF_POINTS = 100.0
# Bands of the fleet page's distribution: (name, lowest score, highest score).
BANDS = (("none", 0, 0), ("low", 1, 24), ("moderate", 25, 49), ("high", 50, 74), ("severe", 75, 100))


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
    points: float
    breakdown: tuple[Contribution, ...]
    # Tie-breaks, worst first: what matters most when two scores are equal.
    exposed_critical: int = 0
    critical: int = 0
    high: int = 0

    def as_json(self) -> list[dict[str, object]]:
        return [{"rule": c.rule_id, "severity": c.severity, "count": c.count, "points": round(c.points, 1)} for c in self.breakdown]


def weight(item: RiskItem) -> float:
    points = Severity(item.severity).points
    if item.running is False:
        points *= STOPPED_FACTOR
    if item.exposed:
        points *= EXPOSED_FACTOR
    return points


def scale(points: float) -> int:
    """Points → 0–100: 0 only for nothing, never 100 short of absurd hosts (~20,000 points)."""
    if points <= 0:
        return 0
    return max(1, min(100, math.floor(100 * points / (points + HALF_POINTS) + 0.5)))


def band(score: int) -> str:
    return next(name for name, low, high in BANDS if low <= score <= high)


def score(items: Iterable[RiskItem]) -> Risk:
    total = 0.0
    by_rule: dict[tuple[str, str], list[float]] = defaultdict(list)
    exposed_critical = critical = high = 0
    for item in items:
        w = weight(item)
        total += w
        by_rule[(item.rule_id, item.severity)].append(w)
        critical += item.severity == Severity.CRITICAL
        exposed_critical += item.severity == Severity.CRITICAL and item.exposed
        high += item.severity == Severity.HIGH
    breakdown = sorted(
        (Contribution(rule_id=r, severity=s, count=len(ws), points=sum(ws)) for (r, s), ws in by_rule.items()),
        key=lambda c: (-c.points, c.rule_id),
    )
    return Risk(
        score=scale(total),
        points=round(total, 2),
        breakdown=tuple(breakdown),
        exposed_critical=exposed_critical,
        critical=critical,
        high=high,
    )
