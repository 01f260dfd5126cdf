"""Findings: current state on the row, every transition in an append-only event table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, F, OuterRef, Q, Window
from django.db.models.functions import RowNumber, Trunc
from django.utils import timezone

from posture import risk
from posture.rules import BY_ID, Evaluation, Rule

from .audit import AuditAction, AuditEntry
from .choices import EventKind, FindingStatus, Severity, SubjectType
from .fields import clip, fit_fingerprint
from .querysets import FindingQuerySet

if TYPE_CHECKING:
    from .hosts import DockerHost, PollRun

# Fields a poll may change on an existing finding; a change of the first three is an event.
_TRACKED = ("severity", "evidence", "running")
_REFRESHED = (
    "severity",
    "evidence",
    "running",
    "remediation",
    "title",
    "cis",
    "exposed",
    "subject_name",
    "last_seen",
    "status",
    "resolved_at",
    "accepted_until",
)


def _plain(value: Any) -> Any:
    """Read-only mappings from the rule core → JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class FindingManager(models.Manager.from_queryset(FindingQuerySet)):
    def reconcile(self, host: DockerHost, evaluation: Evaluation, poll: PollRun, now: datetime) -> Counter[str]:
        """Bring the host's findings in line with one poll's conclusions.

        New ones open, seen ones refresh ``last_seen``, gone ones resolve, returning ones
        reopen; each transition is an event of this poll. The same specs twice change
        nothing but ``last_seen``. Findings of rules that failed on this poll are left
        exactly as they were: a rule that could not conclude has not seen them go.
        """
        failed = set(evaluation.errors)
        existing = {f.fingerprint: f for f in self.filter(host=host) if f.rule_id not in failed}
        counts: Counter[str] = Counter()
        events: list[FindingEvent] = []
        created: list[Finding] = []
        updated: list[Finding] = []
        seen: list[int] = []
        for spec in evaluation.specs:
            # Engine text can be longer than any column: cut it, visibly, rather than fail the poll.
            data = {
                "rule_id": spec.rule_id,
                "cis": spec.cis or "",
                "severity": spec.severity.value,
                "subject_type": spec.subject_type.value,
                "subject_key": clip(Finding, "subject_key", spec.subject_key),
                "subject_name": clip(Finding, "subject_name", spec.subject_name),
                "item_key": clip(Finding, "item_key", spec.key),
                "title": clip(Finding, "title", spec.title),
                "evidence": _plain(spec.evidence),
                "remediation": spec.remediation,
                "running": spec.running,
                "exposed": spec.exposed,
            }
            fingerprint = fit_fingerprint(spec.fingerprint, Finding._meta.get_field("fingerprint").max_length)
            finding = existing.pop(fingerprint, None)
            if finding is None:
                created.append(Finding(host=host, fingerprint=fingerprint, status=FindingStatus.OPEN, first_seen=now, last_seen=now, **data))
                counts["opened"] += 1
                continue
            if finding.status != FindingStatus.RESOLVED and all(getattr(finding, k) == v for k, v in data.items()):
                # The common case, every poll: only last_seen moves, in one UPDATE for all.
                seen.append(finding.pk)
                continue
            before = {f: getattr(finding, f) for f in _TRACKED}
            for field, value in data.items():
                setattr(finding, field, value)
            finding.last_seen = now
            if finding.status == FindingStatus.RESOLVED:
                finding.status, finding.resolved_at = FindingStatus.OPEN, None
                events.append(FindingEvent(finding=finding, poll=poll, at=now, kind=EventKind.REOPENED))
                counts["reopened"] += 1
            changed = {f: {"from": before[f], "to": getattr(finding, f)} for f in _TRACKED if before[f] != getattr(finding, f)}
            if changed:
                events.append(FindingEvent(finding=finding, poll=poll, at=now, kind=EventKind.CHANGED, detail=changed))
            updated.append(finding)
        for finding in existing.values():
            if finding.status != FindingStatus.RESOLVED:
                finding.status, finding.resolved_at = FindingStatus.RESOLVED, now
                events.append(FindingEvent(finding=finding, poll=poll, at=now, kind=EventKind.RESOLVED))
                updated.append(finding)
                counts["resolved"] += 1
        self.bulk_create(created)
        # bulk_create sets primary keys on PostgreSQL and SQLite alike.
        events += [FindingEvent(finding=f, poll=poll, at=now, kind=EventKind.OPENED) for f in created]
        self.filter(pk__in=seen).update(last_seen=now)
        self.bulk_update(updated, _REFRESHED, batch_size=500)
        FindingEvent.objects.bulk_create(events, batch_size=500)
        return counts

    def expire_acceptances(self, now: datetime | None = None) -> int:
        """Reopen every finding whose acceptance has run out: one UPDATE, one event each,
        and one new risk score per host however many of its findings expired."""
        now = now or timezone.now()
        with transaction.atomic():
            # Locked, so two expiry runs at once reopen each finding once.
            expired = list(self.acceptance_expired(now).select_for_update().only("pk", "host_id", "accepted_until"))
            if not expired:
                return 0
            self.filter(pk__in=[f.pk for f in expired]).update(status=FindingStatus.OPEN)
            FindingEvent.objects.bulk_create(
                FindingEvent(finding=f, at=now, kind=EventKind.ACCEPTANCE_EXPIRED, detail={"until": f.accepted_until.isoformat() if f.accepted_until else None})
                for f in expired
            )
            hosts = self.model._meta.get_field("host").related_model.objects
            for host in hosts.filter(pk__in={f.host_id for f in expired}):
                host.refresh_risk()
        return len(expired)


class Finding(models.Model):
    host = models.ForeignKey("DockerHost", on_delete=models.CASCADE, related_name="findings")
    # rule|subject type|subject key|item: stable across container re-creation.
    fingerprint = models.CharField(max_length=500)
    rule_id = models.CharField(max_length=64)
    cis = models.CharField(max_length=16, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices())
    subject_type = models.CharField(max_length=10, choices=SubjectType.choices())
    subject_key = models.CharField(max_length=300)
    subject_name = models.CharField(max_length=300)
    item_key = models.CharField(max_length=300, blank=True)
    title = models.CharField(max_length=200)
    evidence = models.JSONField(default=dict)
    remediation = models.TextField(blank=True)
    running = models.BooleanField(null=True)
    exposed = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=FindingStatus, default=FindingStatus.OPEN)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    accepted_until = models.DateTimeField(null=True, blank=True)

    objects = FindingManager()

    class Meta:
        ordering = ["host", "rule_id", "subject_key"]
        constraints = [models.UniqueConstraint(fields=["host", "fingerprint"], name="finding_identity")]
        indexes = [
            models.Index(fields=["host", "status"], name="finding_host_status"),  # host page, risk
            models.Index(fields=["status", "severity"], name="finding_status_sev"),  # fleet counts
            # FindingQuerySet.rule_hits() (the rules page): an index-only scan of what is current, in group order.
            models.Index(fields=["rule_id", "host", "subject_key", "subject_type"], condition=~Q(status=FindingStatus.RESOLVED), name="finding_rule_hits"),
            # Retention: FindingQuerySet.resolved_before(), long-resolved findings deleted.
            models.Index(fields=["resolved_at"], condition=Q(status=FindingStatus.RESOLVED), name="finding_resolved_at"),
        ]
        permissions = [("accept_risk", "Can accept the risk of a finding")]

    def __str__(self) -> str:
        return f"{self.title} — {self.subject_name} on {self.host_id}"

    @property
    def rule(self) -> Rule | None:
        return BY_ID.get(self.rule_id)

    @property
    def is_open(self) -> bool:
        return self.status == FindingStatus.OPEN

    @property
    def is_accepted(self) -> bool:
        return self.status == FindingStatus.ACCEPTED

    def as_risk_item(self) -> risk.RiskItem:
        return risk.RiskItem(rule_id=self.rule_id, severity=self.severity, running=self.running, exposed=self.exposed)

    def accept(self, *, by: Any, until: datetime, justification: str) -> RiskAcceptance:
        """Accept the risk until ``until``: it stops counting, and comes back when that passes."""
        with transaction.atomic():
            acceptance = RiskAcceptance.objects.create(finding=self, accepted_by=by, justification=justification, expires_at=until)
            self.status, self.accepted_until = FindingStatus.ACCEPTED, until
            self.save(update_fields=["status", "accepted_until"])
            FindingEvent.objects.create(
                finding=self, at=timezone.now(), kind=EventKind.ACCEPTED, actor=by, detail={"until": until.isoformat(), "justification": justification}
            )
            AuditEntry.log(by, AuditAction.FINDING_ACCEPT, self, justification=justification, until=until.isoformat())
            self.host.refresh_risk()
        return acceptance


class FindingEventQuerySet(models.QuerySet):
    def superseded(self) -> FindingEventQuerySet:
        """These events less the newest of each kind of their finding: what retention may drop
        while the events that explain a finding's current state (its last opening,
        resolution, reopening, change, acceptance, expiry) stay."""
        newer = FindingEvent.objects.filter(finding=OuterRef("finding"), kind=OuterRef("kind")).filter(
            Q(at__gt=OuterRef("at")) | Q(at=OuterRef("at"), pk__gt=OuterRef("pk"))
        )
        return self.filter(Exists(newer))


class FindingEvent(models.Model):
    """Append-only: rows are written, never updated."""

    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, related_name="events")
    poll = models.ForeignKey("PollRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=24, choices=EventKind)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    detail = models.JSONField(default=dict, blank=True)

    objects = FindingEventQuerySet.as_manager()

    class Meta:
        ordering = ["at", "pk"]
        indexes = [
            models.Index(fields=["finding", "at"], name="event_finding_at"),  # finding timeline, FindingEventQuerySet.superseded()
            models.Index(fields=["at"], name="event_at"),  # changed_since(), reports
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("finding events are append-only")
        super().save(*args, **kwargs)

    @property
    def is_change(self) -> bool:
        return self.kind == EventKind.CHANGED


class RiskAcceptance(models.Model):
    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, related_name="acceptances")
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    justification = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    @property
    def valid(self) -> bool:
        return self.expires_at > timezone.now()


class RiskSampleQuerySet(models.QuerySet):
    def latest_per_host(self, host_ids: list[int], points: int) -> RiskSampleQuerySet:
        """The last ``points`` samples of each host, oldest first, in one query."""
        ranked = self.filter(host__in=host_ids).annotate(rank=Window(RowNumber(), partition_by=F("host"), order_by=F("at").desc()))
        return ranked.filter(rank__lte=points).order_by("host_id", "at")

    def thinned_to(self, bucket: str) -> models.QuerySet:
        """Ids of these samples that are not the last of their host's ``bucket`` ("hour" or
        "day", UTC): downsampling keeps the score each host had at the end of each bucket."""
        ranked = self.annotate(
            rank=Window(RowNumber(), partition_by=[F("host_id"), Trunc("at", bucket, tzinfo=UTC)], order_by=[F("at").desc(), F("pk").desc()])
        )
        return ranked.filter(rank__gt=1).values_list("pk", flat=True)


class RiskSample(models.Model):
    """One point of a host's risk trend, written with every poll."""

    host = models.ForeignKey("DockerHost", on_delete=models.CASCADE, related_name="risk_samples")
    poll = models.ForeignKey("PollRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField()
    score = models.PositiveSmallIntegerField()
    open_count = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict)
    breakdown = models.JSONField(default=list)

    objects = RiskSampleQuerySet.as_manager()

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["host", "at"], name="risk_host_at")]  # trend charts

    @classmethod
    def record(cls, host: DockerHost, poll: PollRun | None, at: datetime) -> RiskSample:
        """Score the host's open findings (accepted ones count only once expired) and count
        them per severity on the host row (``DockerHost.set_open_counts``); the caller
        saves ``DockerHost.SUMMARY_FIELDS``."""
        now = timezone.now()
        current = list(Finding.objects.filter(host=host).current().only("rule_id", "severity", "running", "exposed", "status", "accepted_until"))
        host.set_open_counts(f.severity for f in current if f.status == FindingStatus.OPEN)
        counted = [f for f in current if f.status == FindingStatus.OPEN or (f.accepted_until is not None and f.accepted_until <= now)]
        result = risk.score(f.as_risk_item() for f in counted)
        host.risk_score, host.risk_breakdown = result.score, result.as_json()
        return cls.objects.create(
            host=host,
            poll=poll,
            at=at,
            score=result.score,
            open_count=len(counted),
            counts=dict(Counter(f.severity for f in counted)),
            breakdown=result.as_json(),
        )
