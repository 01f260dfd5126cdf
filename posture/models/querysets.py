"""Queries that more than one view, task or command asks."""

from __future__ import annotations

from datetime import datetime

from django.db import connections, models
from django.db.models import Case, Count, Max, Q, Sum, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.lookups import Exact
from django.utils import timezone

from .choices import FindingStatus, HostStatus, PollStatus, Severity, SubjectType, severity_rank


class HostQuerySet(models.QuerySet):
    def due_for_poll(self, now: datetime | None = None) -> HostQuerySet:
        now = now or timezone.now()
        return self.filter(enabled=True).filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))

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

    def acceptance_expired(self, now: datetime | None = None) -> FindingQuerySet:
        return self.filter(status=FindingStatus.ACCEPTED, accepted_until__lte=now or timezone.now())

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
