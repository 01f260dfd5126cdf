"""Queries that more than one view, task or command asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections, models, transaction
from django.db.models import Case, Count, F, Max, Q, Sum, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.lookups import Exact
from django.utils import timezone

from posture import risk

from .choices import FindingStatus, HostStatus, PollStatus, Severity, SubjectType, severity_rank

# Riskiest first; equal scores rank by exposed criticals, criticals, highs, then points (posture/risk.py).
RISK_ORDER = ("-risk_score", "-risk_exposed_critical", "-risk_critical", "-risk_high", "-risk_points", "name")

# Spreads hosts' phases over their interval: host k's slots fall at frac(k × φ) of it.
_GOLDEN = 0.6180339887498949
POLLS_QUEUE, FAILING_QUEUE = "celery", "polls-failing"


def phase_slot(pk: int, interval: int, now: datetime) -> datetime:
    """The first of the host's own slots after ``now`` (within one interval): every host has a fixed phase within
    its interval, so hosts that are all due at once (a restart, a bulk registration) are
    spread evenly over the next interval rather than polled together."""
    phase = (pk * _GOLDEN % 1.0) * interval
    since = (now.timestamp() - phase) % interval
    return now + timedelta(seconds=interval - since)


def next_due(pk: int, due: datetime | None, interval: int, now: datetime) -> tuple[datetime, bool]:
    """``(next due time, poll now?)`` for a host found due at ``now``.

    On time (due less than an interval ago): poll now, next due = due + interval, so an
    interval never drifts by dispatch delay. Never polled: poll now, then its slot at
    least an interval later.
    More than an interval late (the scheduler was down): no burst — the host is polled
    at its slot, within one interval.
    """
    step = timedelta(seconds=interval)
    if due is None:
        return phase_slot(pk, interval, now + step), True
    if due + step > now:
        return due + step, True
    return phase_slot(pk, interval, now), False


@dataclass(frozen=True)
class Claim:
    host_id: int
    due: datetime
    queue: str
    poll_now: bool  # False: rescheduled to its slot (it was more than an interval late)


class HostQuerySet(models.QuerySet):
    def due_for_poll(self, now: datetime | None = None) -> HostQuerySet:
        now = now or timezone.now()
        return self.filter(enabled=True).filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))

    def claim_due(self, now: datetime, *, limit: int = 500) -> list[Claim]:
        """Claim up to ``limit`` due hosts: lock them (rows another dispatcher holds are
        skipped) and move each ``next_poll_at`` on (``next_due``) in one UPDATE. Each
        claim says whether to poll now, and on which queue — failing hosts have their
        own, so they cannot take the workers good hosts need."""
        with transaction.atomic():
            hosts = list(
                self.due_for_poll(now)
                .order_by(F("next_poll_at").asc(nulls_first=True))
                .select_for_update(skip_locked=True)
                .only("pk", "next_poll_at", "poll_interval", "failures")[:limit]
            )
            claims = []
            for host in hosts:
                due = host.next_poll_at
                host.next_poll_at, poll_now = next_due(host.pk, due, host.poll_interval, now)
                claims.append(Claim(host.pk, due or now, host.poll_queue, poll_now))
            self.model.objects.bulk_update(hosts, ["next_poll_at"], batch_size=limit)
        return claims

    def stale_q(self, now: datetime | None = None) -> Q:
        """Hosts with no good poll for ``STALE_AFTER_INTERVALS`` intervals (``DockerHost.is_stale``):
        one comparison with the stored ``stale_at``, on the ``host_status_stale`` index."""
        return Q(last_status__in=[HostStatus.OK, HostStatus.NEW], stale_at__lt=now or timezone.now())

    def with_display_status(self, status: HostStatus, now: datetime | None = None) -> HostQuerySet:
        """Filter by what the pages show (``DockerHost.display_status``)."""
        now = now or timezone.now()
        if status == HostStatus.STALE:
            return self.filter(self.stale_q(now))
        if status in (HostStatus.OK, HostStatus.NEW):
            return self.filter(last_status=status, stale_at__gte=now)
        return self.filter(last_status=status)

    def open_totals(self) -> dict[str, int]:
        """Open findings per severity over these hosts, and how many hosts: one aggregate
        over the hosts' stored counts (``DockerHost.set_open_counts``), never over findings."""
        sums = self.aggregate(hosts=Count("pk"), **{s.value: Sum(f"open_{s}") for s in Severity})
        return {key: value or 0 for key, value in sums.items()}

    def by_risk(self) -> HostQuerySet:
        return self.order_by(*RISK_ORDER)

    def in_band(self, name: str) -> HostQuerySet:
        low, high = next((lo, hi) for band, lo, hi in risk.BANDS if band == name)
        return self.filter(risk_score__gte=low, risk_score__lte=high)

    def risk_bands(self) -> dict[str, int]:
        """How many hosts fall in each risk band, in one query (fleet page)."""
        counts = self.aggregate(**{name: Count("pk", filter=Q(risk_score__gte=low, risk_score__lte=high)) for name, low, high in risk.BANDS})
        return {name: counts[name] or 0 for name, _low, _high in risk.BANDS}

    def with_poll_counts(self) -> HostQuerySet:
        return self.annotate(completed_polls=Count("polls", filter=Q(polls__status=PollStatus.OK)))

    def with_listener_errors(self) -> HostQuerySet:
        """``listeners_error``: why the last stored snapshot has no host listeners, if it says."""
        return self.annotate(listeners_error=KeyTextTransform("listeners_error", KeyTransform("host", "snapshot__data")))

    def with_labels(self, labels: dict[str, str]) -> HostQuerySet:
        """Hosts carrying every one of ``labels``. Keys are matched as literal JSON keys,
        never parsed as lookups (a key like ``env__regex`` is just a key that no host has)."""
        qs = self
        for key, value in labels.items():
            qs = qs.filter(Exact(KeyTextTransform(key, "labels"), Value(value)))
        return qs


class FindingQuerySet(models.QuerySet):
    def open(self) -> FindingQuerySet:
        return self.filter(status=FindingStatus.OPEN)

    def current(self) -> FindingQuerySet:
        """Open or accepted: what is still out there."""
        return self.exclude(status=FindingStatus.RESOLVED)

    def for_host(self, host: object) -> FindingQuerySet:
        return self.filter(host=host)

    def with_status(self, status: str) -> FindingQuerySet:
        """One ``FindingStatus``, or every finding for ``"all"`` (or nothing given)."""
        return self if status in ("", "all") else self.filter(status=status)

    def at_least(self, severity: str) -> FindingQuerySet:
        return self.filter(severity__in=Severity.at_least(severity))

    def resolved_before(self, cutoff: datetime) -> FindingQuerySet:
        return self.filter(status=FindingStatus.RESOLVED, resolved_at__lt=cutoff)

    def rule_hits(self) -> dict[str, dict[str, int]]:
        """Per rule, how many hosts, containers (a host's subject) and findings these
        findings hit: the rules page's counts.

        Grouped three times, in the order of the ``finding_rule_hits`` index (rule, host,
        subject), so every level streams over an index-only scan with no sort and no
        COUNT(DISTINCT). The ORM has no subquery in FROM: the outer two levels wrap its SQL.
        """
        container = Max(Case(When(subject_type=SubjectType.CONTAINER, then=1), default=0))
        per_subject = self.order_by().values("rule_id", "host_id", "subject_key").annotate(n=Count("*"), container=container)
        sql, params = per_subject.query.sql_with_params()
        per_rule = (
            "SELECT rule_id, COUNT(*), SUM(containers), SUM(n) FROM ("
            f"SELECT rule_id, host_id, SUM(container) AS containers, SUM(n) AS n FROM ({sql}) per_subject GROUP BY rule_id, host_id"
            ") per_host GROUP BY rule_id"
        )
        with connections[self.db].cursor() as cursor:
            cursor.execute(per_rule, params)
            return {rule: {"hosts": hosts, "containers": int(containers), "findings": int(n)} for rule, hosts, containers, n in cursor.fetchall()}

    def by_severity(self) -> FindingQuerySet:
        """Worst first, then by rule and subject: the order of every findings list."""
        return self.annotate(severity_order=severity_rank()).order_by("-severity_order", "rule_id", "subject_key", "item_key")

    def for_explorer(self) -> FindingQuerySet:
        """Worst first, then rule, host and age: the order the ``finding_explorer_order``
        index keeps, so a page of the fleet's findings needs no sort of all of them."""
        return self.order_by(severity_rank().desc(), "rule_id", "host_id", "id")
