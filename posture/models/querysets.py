"""Queries that more than one view, task or command asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.lookups import Exact
from django.utils import timezone

from posture import risk

from .choices import FindingStatus, HostStatus, PollStatus, Severity, severity_rank

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
                claims.append(Claim(host.pk, due or now, FAILING_QUEUE if host.failures else POLLS_QUEUE, poll_now))
            self.model.objects.bulk_update(hosts, ["next_poll_at"], batch_size=limit)
        return claims

    def stale_q(self, now: datetime | None = None) -> Q:
        """Hosts with no good poll for ``STALE_AFTER_INTERVALS`` intervals (``DockerHost.is_stale``) as a Q.

        Interval arithmetic in SQL differs between SQLite and PostgreSQL, so the Q is
        built per distinct interval (one small query; fleets use few intervals).
        """
        now = now or timezone.now()
        after = self.model.STALE_AFTER_INTERVALS
        stale = Q(pk__in=[])
        for interval in self.model.objects.order_by().values_list("poll_interval", flat=True).distinct():
            since = now - timedelta(seconds=after * interval)
            stale |= Q(poll_interval=interval) & (Q(last_success_at__lt=since) | Q(last_success_at__isnull=True, created_at__lt=since))
        return stale & Q(last_status__in=[HostStatus.OK, HostStatus.NEW])

    def with_display_status(self, status: HostStatus, now: datetime | None = None) -> HostQuerySet:
        """Filter by what the pages show (``DockerHost.display_status``)."""
        if status == HostStatus.STALE:
            return self.filter(self.stale_q(now))
        if status in (HostStatus.OK, HostStatus.NEW):
            return self.filter(last_status=status).exclude(self.stale_q(now))
        return self.filter(last_status=status)

    def with_open_counts(self) -> HostQuerySet:
        """Open finding counts per severity, in the same query (fleet page, reports)."""
        open_ = Q(findings__status=FindingStatus.OPEN)
        return self.annotate(
            open_total=Count("findings", filter=open_),
            **{f"open_{sev}": Count("findings", filter=open_ & Q(findings__severity=sev)) for sev in Severity},
        )

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

    def acceptance_expired(self, now: datetime | None = None) -> FindingQuerySet:
        return self.filter(status=FindingStatus.ACCEPTED, accepted_until__lte=now or timezone.now())

    def by_severity(self) -> FindingQuerySet:
        """Worst first, then by rule and subject: the order of every findings list."""
        return self.annotate(severity_order=severity_rank()).order_by("-severity_order", "rule_id", "subject_key", "item_key")

    def for_explorer(self) -> FindingQuerySet:
        """Worst first, then rule, host and age: the order the ``finding_explorer_order``
        index keeps, so a page of the fleet's findings needs no sort of all of them."""
        return self.order_by(severity_rank().desc(), "rule_id", "host_id", "id")
