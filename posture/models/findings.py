"""Findings: current state on the row, every transition in an append-only event table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Window
from django.db.models.functions import RowNumber, Trunc
from django.utils import timezone

from posture import risk
from posture.rules import BY_ID, Evaluation, Rule

from .choices import EventKind, FindingStatus, Severity, SubjectType, severity_rank
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
    "exception",
    "image",
    "compose_project",
)


def plain_json(value: Any) -> Any:
    """Read-only mappings from the rule core → JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def last_seen_at(status: str, last_seen: datetime, host_last_success: datetime | None) -> datetime:
    """When a poll last saw a finding: for an open or accepted one, the host's last good
    poll (every good poll since its last change saw it; unchanged polls write nothing to
    findings); else the stored ``last_seen``."""
    if status != FindingStatus.RESOLVED and host_last_success and host_last_success > last_seen:
        return host_last_success
    return last_seen


class FindingManager(models.Manager.from_queryset(FindingQuerySet)):
    def reconcile(self, host: DockerHost, evaluation: Evaluation, poll: PollRun, now: datetime) -> Counter[str]:
        """Bring the host's findings in line with one poll's conclusions.

        New ones open, gone ones resolve, returning ones reopen; each transition is an
        event of this poll. The same specs twice write nothing: an unchanged finding's
        ``last_seen`` is the host's last good poll (``Finding.last_seen_at``). Findings
        of rules that failed on this poll are left exactly as they were: a rule that
        could not conclude has not seen them go.
        """
        failed = set(evaluation.errors)
        existing = {f.fingerprint: f for f in self.filter(host=host) if f.rule_id not in failed}
        counts: Counter[str] = Counter()
        events: list[FindingEvent] = []
        created: list[Finding] = []
        updated: list[Finding] = []
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
                "evidence": plain_json(spec.evidence),
                "remediation": spec.remediation,
                "running": spec.running,
                "exposed": spec.exposed,
                "image": clip(Finding, "image", spec.image),
                "compose_project": clip(Finding, "compose_project", spec.compose_project),
            }
            fingerprint = fit_fingerprint(spec.fingerprint, Finding._meta.get_field("fingerprint").max_length)
            finding = existing.pop(fingerprint, None)
            if finding is None:
                created.append(Finding(host=host, fingerprint=fingerprint, status=FindingStatus.OPEN, first_seen=now, last_seen=now, **data))
                counts[EventKind.OPENED] += 1
                continue
            if finding.status != FindingStatus.RESOLVED and all(getattr(finding, k) == v for k, v in data.items()):
                continue  # the common case: nothing to write (last_seen is derived)
            before = {f: getattr(finding, f) for f in _TRACKED}
            for field, value in data.items():
                setattr(finding, field, value)
            finding.last_seen = now
            if finding.status == FindingStatus.RESOLVED:
                finding.status, finding.resolved_at = FindingStatus.OPEN, None
                events.append(FindingEvent(finding=finding, poll=poll, at=now, kind=EventKind.REOPENED))
                counts[EventKind.REOPENED] += 1
            changed = {f: {"from": before[f], "to": getattr(finding, f)} for f in _TRACKED if before[f] != getattr(finding, f)}
            if changed:
                events.append(FindingEvent(finding=finding, poll=poll, at=now, kind=EventKind.CHANGED, detail=changed))
            updated.append(finding)
        for finding in existing.values():
            if finding.status != FindingStatus.RESOLVED:
                # Last seen by the host's previous good poll (stored now: it stops being derived).
                finding.last_seen = max(finding.last_seen, host.last_success_at or finding.last_seen)
                finding.status, finding.resolved_at = FindingStatus.RESOLVED, now
                events.append(FindingEvent(finding=finding, poll=poll, at=now, kind=EventKind.RESOLVED))
                updated.append(finding)
                counts[EventKind.RESOLVED] += 1
        # Exceptions (posture/models/exceptions.py): an open finding that an active exception
        # covers starts accepted, or goes back to accepted; one query, and only when needed.
        candidates = [f for f in (*created, *updated) if f.status == FindingStatus.OPEN]
        covered = self._exceptions().coverage_for(host, now).accept(candidates) if candidates else []
        self.bulk_create(created)
        # bulk_create sets primary keys on PostgreSQL and SQLite alike.
        events += [FindingEvent(finding=f, poll=poll, at=now, kind=EventKind.OPENED) for f in created]
        events += [FindingEvent(finding=f, poll=poll, at=now, kind=EventKind.ACCEPTED, detail=f.exception.event_detail()) for f in covered]
        counts[EventKind.ACCEPTED] = len(covered)
        self.bulk_update(updated, _REFRESHED, batch_size=500)
        FindingEvent.objects.bulk_create(events, batch_size=500)
        return counts

    def _exceptions(self) -> Any:
        # RiskException is defined on top of this module (it needs Finding), so it is
        # reached through the relation rather than imported.
        return self.model._meta.get_field("exception").related_model.objects


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
    # The exception that accepts this finding now (the status is then ACCEPTED).
    exception = models.ForeignKey("RiskException", null=True, blank=True, on_delete=models.SET_NULL, related_name="covered")
    # Copied from the container at every poll, so the explorer and exception scopes filter
    # without joining the inventory (empty for network and daemon findings).
    image = models.CharField(max_length=300, blank=True)
    compose_project = models.CharField(max_length=200, blank=True)

    objects = FindingManager()

    class Meta:
        ordering = ["host", "rule_id", "subject_key"]
        constraints = [models.UniqueConstraint(fields=["host", "fingerprint"], name="finding_identity")]
        indexes = [
            models.Index(fields=["host", "status"], name="finding_host_status"),  # host page, risk
            models.Index(fields=["status", "severity"], name="finding_status_sev"),  # fleet counts
            # Rules page; explorer ?rule= and its grouped view (counts of findings and hosts per rule, index only).
            models.Index(fields=["rule_id", "status", "host"], name="finding_rule_status_host"),
            # Explorer rows (FindingQuerySet.for_explorer): a page of the fleet's findings, worst
            # first, read in index order instead of sorting them all, whatever the status filter.
            models.Index(severity_rank().desc(), F("rule_id"), F("host"), F("id"), name="finding_explorer_order"),
            # FindingFilter.apply(): ?image= and ?name= equality and prefix globs (the pattern
            # opclass serves LIKE 'traefik:%'); infix globs and ?q= use the trigram indexes that
            # migration 0007_triage adds on PostgreSQL (finding_*_trgm). ?project=, ?since=.
            models.Index(fields=["image"], name="finding_image", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["subject_name"], name="finding_subject_name", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["compose_project"], name="finding_project"),
            models.Index(fields=["first_seen"], name="finding_first_seen"),
            # ?resolved_since= ("resolved this week") and retention (FindingQuerySet.resolved_before()):
            # only resolved findings have a date to index.
            models.Index(fields=["resolved_at"], name="finding_resolved_at", condition=Q(resolved_at__isnull=False)),
            models.Index(fields=["exception", "status"], name="finding_exception"),  # coverage counts, release
            # FindingQuerySet.rule_hits() (the rules page): an index-only scan of what is current, in group order.
            models.Index(fields=["rule_id", "host", "subject_key", "subject_type"], condition=~Q(status=FindingStatus.RESOLVED), name="finding_rule_hits"),
        ]
        permissions = [("accept_risk", "Can accept the risk of a finding")]

    def __str__(self) -> str:
        return f"{self.title} — {self.subject_name} on {self.host_id}"

    @property
    def rule(self) -> Rule | None:
        return BY_ID.get(self.rule_id)

    @property
    def last_seen_at(self) -> datetime:
        return last_seen_at(self.status, self.last_seen, self.host.last_success_at)

    @property
    def is_open(self) -> bool:
        return self.status == FindingStatus.OPEN

    @property
    def is_accepted(self) -> bool:
        return self.status == FindingStatus.ACCEPTED

    def as_risk_item(self) -> risk.RiskItem:
        return risk.RiskItem(rule_id=self.rule_id, severity=self.severity, running=self.running, exposed=self.exposed)

    def accept(self, *, by: Any, until: datetime, justification: str) -> Any:
        """Accept the risk of this one finding until ``until``: an exception whose scope is
        this finding. It stops counting, and comes back when that passes."""
        return type(self).objects._exceptions().accept_finding(self, by=by, until=until, justification=justification)


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
            models.Index(fields=["at"], name="event_at"),  # reports (events of a period), retention
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("finding events are append-only")
        super().save(*args, **kwargs)

    @property
    def is_change(self) -> bool:
        return self.kind == EventKind.CHANGED


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
    # What the score is computed from (posture/risk.py): a formula change recomputes history from it.
    points = models.FloatField(default=0)
    open_count = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict)
    breakdown = models.JSONField(default=list)

    objects = RiskSampleQuerySet.as_manager()

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["host", "at"], name="risk_host_at")]  # trend charts

    @classmethod
    def due(cls, host: DockerHost, now: datetime, every: timedelta = timedelta(hours=1)) -> bool:
        """Whether the host's trend needs a point although its score did not change."""
        return host.risk_sampled_at is None or now - host.risk_sampled_at >= every

    @classmethod
    def repeat(cls, host: DockerHost, poll: PollRun | None, at: datetime) -> RiskSample:
        """The host's current score again, without reading its findings (nothing changed)."""
        counts: Counter[str] = Counter()
        for item in host.risk_breakdown:
            counts[item["severity"]] += int(item.get("count", 0))
        host.risk_sampled_at = at
        return cls.objects.create(
            host=host,
            poll=poll,
            at=at,
            score=host.risk_score,
            points=host.risk_points,
            open_count=sum(counts.values()),
            counts=dict(counts),
            breakdown=host.risk_breakdown,
        )

    @classmethod
    def record(cls, host: DockerHost, poll: PollRun | None, at: datetime, *, every: timedelta | None = None) -> RiskSample:
        """Score the host's open findings (accepted ones count only once expired) and count
        them per severity on the host row (``DockerHost.set_open_counts``); the caller
        saves ``DockerHost.SUMMARY_FIELDS``.

        With ``every``, the sample is stored only when the score or its breakdown changed
        or the last one is older than that; otherwise it is returned unsaved."""
        now = timezone.now()
        current = list(Finding.objects.filter(host=host).current().only("rule_id", "severity", "running", "exposed", "status", "accepted_until"))
        host.set_open_counts(f.severity for f in current if f.status == FindingStatus.OPEN)
        counted = [f for f in current if f.status == FindingStatus.OPEN or (f.accepted_until is not None and f.accepted_until <= now)]
        result = risk.score(f.as_risk_item() for f in counted)
        unchanged = (host.risk_score, host.risk_breakdown) == (result.score, result.as_json())
        host.set_risk(result)
        if every is not None and unchanged and not cls.due(host, at, every):
            return cls(host=host, poll=poll, at=at, score=result.score, points=result.points, open_count=len(counted), breakdown=result.as_json())
        host.risk_sampled_at = at
        return cls.objects.create(
            host=host,
            poll=poll,
            at=at,
            score=result.score,
            points=result.points,
            open_count=len(counted),
            counts=dict(Counter(f.severity for f in counted)),
            breakdown=result.as_json(),
        )
