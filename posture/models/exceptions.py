"""Exceptions: accepting the risk of every finding a scope covers, now and later.

An exception names a rule (or every rule of a severity and milder) and a scope made of
any of host, host labels, image glob, compose project and container name glob — or one
finding, which is how the single-finding acceptance is kept. Its scope is a
``FindingFilter`` (posture/models/filters.py), so the explorer link to what it covers,
the preview and the coverage agree with the SQL and the Python matching by construction.

Coverage is applied in three places, each in the transaction of the change with its
audit entry and events: at creation (matching open findings become accepted now), during
reconciliation (a finding opened later starts accepted, ``Coverage.accept``), and when
another exception ends (what it released is taken over at once if still covered).
Expiry (beat) and removal reopen what an exception covered, with events.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from posture.labels import describe, parse_label
from posture.rules import BY_ID

from .audit import AuditAction, AuditEntry
from .choices import EventKind, ExceptionStatus, FindingStatus, Severity, SubjectType
from .filters import FindingFilter
from .findings import Finding, FindingEvent
from .hosts import DockerHost

MAX_DAYS = 366  # "at most a year"


def start_of(day: date) -> datetime:
    """An exception chosen by its day lapses at the start of that day, UTC."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def expiry_problem(expires_at: datetime, since: datetime) -> str:
    """The one expiry rule of exceptions (and single-finding acceptances), for the model,
    the forms and the API: after ``since`` (now), at most a year after it. Empty if fine."""
    if expires_at <= since:
        return "Pick a day after today."
    if expires_at > since + timedelta(days=MAX_DAYS):
        return "Exceptions last at most a year; review it again then."
    return ""


CHUNK = 2000
# Past this many distinct images or names a selection gets no image or name scope.
MAX_DISTINCT = 5000


@dataclass
class Coverage:
    """The active exceptions that may apply to one host, matched in Python."""

    host: DockerHost
    exceptions: list[RiskException]

    def match(self, finding: Finding) -> RiskException | None:
        return next((e for e in self.exceptions if e.scope().matches(finding, self.host)), None)

    def accept(self, findings: Iterable[Finding]) -> list[Finding]:
        """Mark each open finding an exception covers as accepted (not saved: the caller
        writes them); returns those it marked, each with ``exception`` set."""
        covered = []
        for finding in findings:
            if finding.status != FindingStatus.OPEN:
                continue
            exception = self.match(finding)
            if exception is None:
                # A finding back from resolved keeps no stale link to an exception that ended.
                finding.exception, finding.accepted_until = None, None
                continue
            finding.status, finding.exception, finding.accepted_until = FindingStatus.ACCEPTED, exception, exception.expires_at
            covered.append(finding)
        return covered


class RiskExceptionQuerySet(models.QuerySet):
    def active(self, now: datetime | None = None) -> RiskExceptionQuerySet:
        return self.filter(status=ExceptionStatus.ACTIVE, expires_at__gt=now or timezone.now())

    def due(self, now: datetime) -> RiskExceptionQuerySet:
        return self.filter(status=ExceptionStatus.ACTIVE, expires_at__lte=now)

    def with_coverage(self) -> RiskExceptionQuerySet:
        """How many findings and hosts each covers now, in the same query (list pages, PDF)."""
        accepted = Q(covered__status=FindingStatus.ACCEPTED)
        counted = self.annotate(covered_findings=Count("covered", filter=accepted), covered_hosts=Count("covered__host", filter=accepted, distinct=True))
        # An aggregate drops Meta.ordering: say it again, newest first.
        return counted.order_by(*self.model._meta.ordering)


class RiskExceptionManager(models.Manager.from_queryset(RiskExceptionQuerySet)):
    def coverage_for(self, host: DockerHost, now: datetime) -> Coverage:
        """The active exceptions whose host and finding scope allow ``host`` (one query)."""
        candidates = self.active(now).filter(Q(host__isnull=True) | Q(host=host)).filter(Q(finding__isnull=True) | Q(finding__host=host))
        return Coverage(host=host, exceptions=list(candidates.select_related("host").order_by("pk")))

    def add(self, *, actor: Any, audit: AuditAction = AuditAction.EXCEPTION_ADD, **fields: Any) -> RiskException:
        """Validate and save a new exception and accept what it covers now, with events,
        new risk scores and the audit entry, in one transaction."""
        exception = self.model(created_by=_user(actor), **fields)
        exception.full_clean()
        now = timezone.now()
        with transaction.atomic():
            exception.save()
            covered, hosts = exception.cover_open(actor, now)
            AuditEntry.log(actor, audit, exception, scope=exception.describe(), covered=covered, hosts=len(hosts), expires=exception.expires_at.isoformat())
            _refresh(hosts)
        return exception

    def accept_finding(self, finding: Finding, *, by: Any, until: datetime, justification: str) -> RiskException:
        """The single-finding acceptance: an exception whose scope is this one finding."""
        if finding.status == FindingStatus.RESOLVED:
            raise ValidationError("This finding is resolved; there is no risk left to accept.")
        return self.add(
            actor=by,
            audit=AuditAction.FINDING_ACCEPT,
            finding=finding,
            host=finding.host,
            rule_id=finding.rule_id,
            justification=justification,
            owner=_user(by),
            expires_at=until,
        )

    def expire_due(self, now: datetime) -> int:
        """End every exception past its expiry and reopen what it covered (a finding that
        another active exception covers stays accepted under it), with one event per
        finding, one audit entry per exception and one new score per host, in a fixed
        number of queries. Returns how many findings reopened."""
        with transaction.atomic():
            # Locked and skipped when locked: two expiry runs at once end each exception once.
            due = list(self.due(now).select_related("host").select_for_update(skip_locked=True, of=("self",)).order_by("pk"))
            self.filter(pk__in=[e.pk for e in due]).update(status=ExceptionStatus.EXPIRED, ended_at=now)
            # An acceptance left without an exception (its row deleted in the admin) lapses too.
            orphans = Q(exception__isnull=True, accepted_until__lte=now)
            reopened, hosts = release(Q(exception__in=due) | orphans, EventKind.ACCEPTANCE_EXPIRED, None, now)
            AuditEntry.objects.bulk_create(
                AuditEntry(actor_name="system", action=AuditAction.EXCEPTION_EXPIRE, target=str(e), detail={"scope": e.describe()}) for e in due
            )
            _refresh(hosts)
        return reopened


class RiskException(models.Model):
    # What: one rule, or every rule of ``max_severity`` and milder.
    rule_id = models.CharField("rule", max_length=64, blank=True)
    max_severity = models.CharField("severity and below", max_length=10, choices=Severity.choices(), blank=True)
    # Where: any combination; empty means anywhere.
    host = models.ForeignKey(DockerHost, null=True, blank=True, on_delete=models.CASCADE, related_name="exceptions")
    labels = models.JSONField(default=dict, blank=True)
    image = models.CharField("image glob", max_length=300, blank=True)
    project = models.CharField("compose project", max_length=200, blank=True)
    name = models.CharField("container name glob", max_length=300, blank=True)
    # The single-finding acceptance.
    finding = models.ForeignKey(Finding, null=True, blank=True, on_delete=models.CASCADE, related_name="exceptions")
    justification = models.TextField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=ExceptionStatus, default=ExceptionStatus.ACTIVE)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = RiskExceptionManager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "expires_at"], name="exception_due")]  # expire_due(), active()

    def __str__(self) -> str:
        return f"exception #{self.pk}"

    # --- what it covers -------------------------------------------------------------

    def scope(self) -> FindingFilter:
        """The open findings this exception covers, as the explorer's filter."""
        cached = getattr(self, "_scope", None)
        if cached is None:
            params = {
                "rule": [self.rule_id] if self.rule_id else [],
                "up_to": self.max_severity,
                "label": [f"{k}={v}" for k, v in sorted(self.labels.items())],
                "image": self.image,
                "project": self.project,
                "name": self.name,
                "finding": str(self.finding_id or ""),
            }
            if self.host_id is not None:
                params["host"] = [self.host.name]
            # Stored scopes were validated when saved; the host is compared by name, as the explorer does.
            cached = self._scope = FindingFilter.parse(params, check_hosts=False)
        return cached

    def describe(self) -> str:
        """One line: ``port-sensitive-service-exposed on env=prod, image redis:*``."""
        what = self.rule_id or f"every rule of {self.max_severity} severity and below"
        if self.finding_id:
            return f"{what}: finding #{self.finding_id} on {self.host}"
        where = [f"host {self.host}"] if self.host_id else []
        where += [describe(self.labels)] if self.labels else []
        where += [f"image {self.image}"] if self.image else []
        where += [f"project {self.project}"] if self.project else []
        where += [f"name {self.name}"] if self.name else []
        return f"{what} on {', '.join(where) or 'every host'}"

    def preview(self) -> tuple[int, int]:
        """(open findings, hosts) this exception would cover if saved now."""
        rows = self.scope().apply(Finding.objects.all()).aggregate(findings=Count("pk"), hosts=Count("host", distinct=True))
        return rows["findings"], rows["hosts"]

    @property
    def is_active(self) -> bool:
        return self.status == ExceptionStatus.ACTIVE and self.expires_at > timezone.now()

    def event_detail(self) -> dict[str, Any]:
        return {"exception": self.pk, "until": self.expires_at.isoformat()}

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if bool(self.rule_id) == bool(self.max_severity):
            errors["rule_id"] = "Name one rule, or a severity to cover every rule of that severity and below."
        elif self.rule_id and self.rule_id not in BY_ID:
            errors["rule_id"] = f"No rule named {self.rule_id}."
        for key, value in (self.labels or {}).items():
            try:
                parse_label(f"{key}={value}")
            except ValidationError as exc:
                errors["labels"] = exc.messages[0]
        now = timezone.now()
        if (self._state.adding or self.status == ExceptionStatus.ACTIVE) and self.expires_at is not None:
            # An edit keeps the year counted from when the exception was made.
            problem = expiry_problem(self.expires_at, now) or expiry_problem(self.expires_at, min(self.created_at or now, now))
            if problem:
                errors["expires_at"] = problem
        if len((self.justification or "").strip()) < 10:
            errors["justification"] = "Say why this is acceptable, and who decided (at least 10 characters)."
        if errors:
            raise ValidationError(errors)

    # --- changes --------------------------------------------------------------------

    def cover_open(self, actor: Any, now: datetime) -> tuple[int, set[int]]:
        """Accept the open findings in scope now; returns (how many, host ids)."""
        matching = list(self.scope().apply(Finding.objects.all()).select_for_update().values_list("pk", "host_id"))
        ids = [pk for pk, _host in matching]
        for start in range(0, len(ids), CHUNK):
            Finding.objects.filter(pk__in=ids[start : start + CHUNK]).update(status=FindingStatus.ACCEPTED, exception=self, accepted_until=self.expires_at)
        detail, user = self.event_detail(), _user(actor)
        FindingEvent.objects.bulk_create(
            (FindingEvent(finding_id=pk, at=now, kind=EventKind.ACCEPTED, actor=user, detail=detail) for pk in ids), batch_size=CHUNK
        )
        return len(ids), {host for _pk, host in matching}

    def remove(self, *, actor: Any) -> int:
        """End the exception now and reopen what it covered; returns the findings reopened."""
        now = timezone.now()
        with transaction.atomic():
            locked = RiskException.objects.select_for_update().get(pk=self.pk)
            if locked.status != ExceptionStatus.ACTIVE:
                return 0
            self.status, self.ended_at = ExceptionStatus.REMOVED, now
            self.save(update_fields=["status", "ended_at"])
            reopened, hosts = release(Q(exception=self), EventKind.ACCEPTANCE_WITHDRAWN, actor, now)
            AuditEntry.log(actor, AuditAction.EXCEPTION_REMOVE, self, scope=self.describe(), reopened=reopened)
            _refresh(hosts)
        return reopened

    def edit(self, *, actor: Any, justification: str, owner: Any, expires_at: datetime) -> list[str]:
        """Change the justification, owner or expiry (the scope is fixed: remove and
        create to change it). Returns the fields that changed."""
        before = {"justification": self.justification, "owner": self.owner_id, "expires_at": self.expires_at}
        self.justification, self.owner, self.expires_at = justification, owner, expires_at
        changed = [k for k, v in before.items() if v != {"justification": justification, "owner": self.owner_id, "expires_at": expires_at}[k]]
        if not changed:
            return []
        self.full_clean()
        with transaction.atomic():
            self.save(update_fields=["justification", "owner", "expires_at"])
            if "expires_at" in changed:
                Finding.objects.filter(exception=self, status=FindingStatus.ACCEPTED).update(accepted_until=expires_at)
            AuditEntry.log(actor, AuditAction.EXCEPTION_EDIT, self, fields=changed, expires=expires_at.isoformat())
        return changed


def release(which: Q, kind: EventKind, actor: Any, now: datetime) -> tuple[int, set[int]]:
    """Reopen the accepted findings ``which`` selects, with ``kind`` events naming the
    exception that let go; an active exception that still covers one takes it over at
    once (with its own event). Returns (findings reopened, host ids touched)."""
    findings = list(Finding.objects.filter(which, status=FindingStatus.ACCEPTED).select_for_update().select_related("host"))
    if not findings:
        return 0, set()
    ids = [f.pk for f in findings]
    for start in range(0, len(ids), CHUNK):
        Finding.objects.filter(pk__in=ids[start : start + CHUNK]).update(status=FindingStatus.OPEN, exception=None, accepted_until=None)
    user = _user(actor)
    events = [FindingEvent(finding_id=f.pk, at=now, kind=kind, actor=user, detail={"exception": f.exception_id}) for f in findings]
    for f in findings:
        f.status, f.exception, f.accepted_until = FindingStatus.OPEN, None, None
    by_host: dict[int, list[Finding]] = defaultdict(list)
    for f in findings:
        by_host[f.host_id].append(f)
    others = list(RiskException.objects.active(now).filter(Q(host__isnull=True) | Q(host__in=list(by_host))).select_related("host"))
    taken = []
    for host_id, mine in by_host.items() if others else ():
        taken += Coverage(host=mine[0].host, exceptions=[e for e in others if e.host_id in (None, host_id)]).accept(mine)
    if taken:
        Finding.objects.bulk_update(taken, ["status", "exception", "accepted_until"], batch_size=500)
        events += [FindingEvent(finding_id=f.pk, at=now, kind=EventKind.ACCEPTED, detail=f.exception.event_detail()) for f in taken]
    FindingEvent.objects.bulk_create(events, batch_size=CHUNK)
    return len(findings) - len(taken), set(by_host)


def common_glob(values: list[str]) -> str:
    """The narrowest glob matching every value: the value itself, ``prefix*``, or "" (none)."""
    if not values:
        return ""
    if len(set(values)) == 1:
        return values[0]
    prefix = os.path.commonprefix(values)
    return f"{prefix}*" if prefix else ""


def narrowest_scope(findings: QuerySet) -> dict[str, Any]:
    """The narrowest scope that covers every finding of ``findings`` (a selection in the
    explorer), as the exception form's query parameters: its rule (or its worst severity
    and below), its host (or the labels all its hosts share), and for containers the image,
    compose project and name they share (exactly, or as a common-prefix glob)."""
    findings = findings.order_by()
    params: dict[str, Any] = {}
    rules = list(findings.values_list("rule_id", flat=True).distinct()[:2])
    if len(rules) == 1:
        params["rule"] = rules[0]
    elif rules:
        severities = {Severity(s) for s in findings.values_list("severity", flat=True).distinct()}
        params["up_to"] = max(severities, key=lambda s: s.rank).value
    hosts = list(DockerHost.objects.filter(pk__in=findings.values("host")).values_list("name", "labels"))
    if len(hosts) == 1:
        params["host"] = hosts[0][0]
    elif hosts:
        shared = set.intersection(*({(k, str(v)) for k, v in (labels or {}).items()} for _name, labels in hosts))
        if shared:
            params["label"] = ", ".join(f"{k}={v}" for k, v in sorted(shared))
    if hosts and not findings.exclude(subject_type=SubjectType.CONTAINER).exists():
        for param, column in (("image", "image"), ("name", "subject_name"), ("project", "compose_project")):
            values = list(findings.values_list(column, flat=True).distinct()[: MAX_DISTINCT + 1])
            if len(values) <= MAX_DISTINCT:
                glob = common_glob(values) if param != "project" else (values[0] if len(values) == 1 else "")
                if glob and glob != "*":
                    params[param] = glob
    return params


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


def _refresh(host_ids: set[int]) -> None:
    """One new risk score per host touched, however many of its findings changed."""
    for host in DockerHost.objects.filter(pk__in=host_ids):
        host.refresh_risk()
