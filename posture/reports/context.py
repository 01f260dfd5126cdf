"""Everything a report shows, gathered in a fixed number of queries however many hosts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncDate

from posture import charts
from posture.labels import describe
from posture.models import DockerHost, EventKind, Finding, FindingEvent, FindingStatus, RiskException, RiskSample, Severity, Snapshot, severity_rank
from posture.rules import RULES
from posture.topology import Drawing, draw

# Past these, sections summarise instead of listing: WeasyPrint's cost grows with table rows.
MAX_CHANGES_LISTED = 200
DETAILED_SEVERITIES = (Severity.CRITICAL, Severity.HIGH)
TOPOLOGY_HOSTS = 3  # the riskiest hosts get their topology drawn in the report


@dataclass
class HostSection:
    host: DockerHost
    chart: str
    detailed: list[Finding] = field(default_factory=list)
    summary: list[Finding] = field(default_factory=list)
    topology: Drawing | None = None


def _draw_riskiest(hosts: list[DockerHost], sections: dict[int, HostSection], open_by_host: dict[int, list[Finding]]) -> None:
    """Topologies of the riskiest hosts that have something to draw, their snapshots in one query."""
    riskiest = [h for h in hosts if h.risk_score > 0 and h.snapshot_id][:TOPOLOGY_HOSTS]
    snapshots = Snapshot.objects.in_bulk([h.snapshot_id for h in riskiest])
    for h in riskiest:
        sections[h.pk].topology = draw(snapshots[h.snapshot_id].snapshot(), open_by_host[h.pk], h.name)


def build(*, labels: dict[str, str], start: datetime, end: datetime, title: str) -> dict[str, Any]:
    hosts = list(DockerHost.objects.with_labels(labels).by_risk())
    ids = [h.pk for h in hosts]
    totals = {s.value: sum(getattr(h, f"open_{s}") for h in hosts) for s in Severity}

    daily: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    fleet_daily: dict[Any, list[float]] = defaultdict(list)
    samples = (
        RiskSample.objects.filter(host__in=ids, at__gte=start, at__lt=end)
        .annotate(day=TruncDate("at"))
        .values("host_id", "day")
        .annotate(score=Avg("score"))
        .order_by("day")
    )
    for row in samples:
        moment = datetime.combine(row["day"], datetime.min.time(), tzinfo=start.tzinfo)
        daily[row["host_id"]].append((moment, round(row["score"])))
        fleet_daily[moment].append(row["score"])
    fleet_trend = [(day, round(sum(v) / len(v))) for day, v in sorted(fleet_daily.items())]

    current = Finding.objects.filter(host__in=ids).current().by_severity().select_related("host", "exception__owner")
    sections = {h.pk: HostSection(host=h, chart=charts.risk_history(daily[h.pk], width=480, height=120)) for h in hosts}
    accepted = []
    open_by_host: dict[int, list[Finding]] = defaultdict(list)
    for f in current:
        if f.status == FindingStatus.OPEN:
            open_by_host[f.host_id].append(f)
        if f.status == FindingStatus.ACCEPTED:
            accepted.append(f)
        elif f.severity in DETAILED_SEVERITIES:
            sections[f.host_id].detailed.append(f)
        else:
            sections[f.host_id].summary.append(f)
    # Every active exception with what it covers in this report's scope (a fleet-wide report
    # lists those covering nothing too: a scope that matches nothing is worth a look).
    in_scope = Q(covered__status=FindingStatus.ACCEPTED, covered__host__in=ids)
    exceptions = [
        e
        for e in RiskException.objects.active(end)
        .select_related("owner", "host")
        .annotate(in_scope=Count("covered", filter=in_scope), hosts_in_scope=Count("covered__host", filter=in_scope, distinct=True))
        .order_by("expires_at", "pk")
        if e.in_scope or not labels
    ]

    _draw_riskiest(hosts, sections, open_by_host)

    events = FindingEvent.objects.filter(finding__host__in=ids, at__gte=start, at__lt=end, kind__in=[EventKind.OPENED, EventKind.RESOLVED, EventKind.REOPENED])
    change_counts = dict(events.values_list("kind").annotate(n=Count("id")).values_list("kind", "n"))
    # Worst first within each kind, so the cut drops the least severe changes.
    ordered = events.select_related("finding", "finding__host").annotate(rank=severity_rank("finding__severity"))
    changes = list(ordered.order_by("kind", "-rank", "at")[:MAX_CHANGES_LISTED])

    top_rules = list(
        Finding.objects.filter(host__in=ids)
        .open()
        .values("rule_id", "title", "severity")
        .annotate(findings=Count("id"), hosts=Count("host", distinct=True))
        .order_by("-findings")[:10]
    )
    fleet_score = round(sum(h.risk_score for h in hosts) / len(hosts)) if hosts else 0
    return {
        "title": title,
        "scope": describe(labels),
        "start": start,
        "end": end,
        "hosts": hosts,
        "fleet_score": fleet_score,
        "fleet_start": fleet_trend[0][1] if fleet_trend else None,
        "fleet_chart": charts.risk_history(fleet_trend),
        "totals": totals,
        "severity_bar": charts.severity_bar(totals, width=480),
        "top_hosts": hosts[:10],
        "top_rules": top_rules,
        "change_counts": {k: change_counts.get(k, 0) for k in (EventKind.OPENED, EventKind.RESOLVED, EventKind.REOPENED)},
        "changes": changes,
        "changes_truncated": sum(change_counts.values()) > len(changes),
        "sections": list(sections.values()),
        "accepted": accepted,
        "exceptions": exceptions,
        "rules": RULES,
    }
