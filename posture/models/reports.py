"""Report schedules and the reports they produce."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from posture.labels import describe

from .audit import AuditAction, AuditEntry


def report_storage() -> FileSystemStorage:
    return FileSystemStorage(location=settings.REPORTS_DIR)


class Frequency(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"


class ReportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RENDERING = "rendering", "Rendering"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


def _month_before(day: date) -> date:
    year, month = (day.year - 1, 12) if day.month == 1 else (day.year, day.month - 1)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


class ReportSchedule(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # Hosts whose labels include all of these; empty means every host.
    labels = models.JSONField(default=dict, blank=True)
    frequency = models.CharField(max_length=10, choices=Frequency, default=Frequency.WEEKLY)
    weekday = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(6)], help_text="0 = Monday (weekly)")
    day_of_month = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(28)], help_text="1–28 (monthly)")
    at = models.TimeField(default=time(6, 0), help_text="UTC")
    recipients = models.TextField(blank=True, help_text="E-mail addresses, comma-separated")
    enabled = models.BooleanField(default=True)
    # The next run, moved forward with a conditional UPDATE: one report per period.
    next_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="schedule_due")]  # dispatch_reports

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        for address in self.recipient_list:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError({"recipients": f"“{address}” is not an e-mail address."}) from None

    @property
    def recipient_list(self) -> list[str]:
        return [a.strip() for a in self.recipients.replace("\n", ",").split(",") if a.strip()]

    @property
    def scope_label(self) -> str:
        return describe(self.labels)

    def run_after(self, moment: datetime) -> datetime:
        """The first scheduled time strictly after ``moment``."""
        moment = moment.astimezone(UTC)
        day = moment.date()
        while True:
            candidate = datetime.combine(day, self.at, tzinfo=UTC)
            matches = (
                self.frequency == Frequency.DAILY
                or (self.frequency == Frequency.WEEKLY and day.weekday() == self.weekday)
                or (self.frequency == Frequency.MONTHLY and day.day == self.day_of_month)
            )
            if matches and candidate > moment:
                return candidate
            day += timedelta(days=1)

    def period_before(self, run_at: datetime) -> tuple[datetime, datetime]:
        """The period a run at ``run_at`` reports on: since the previous run."""
        if self.frequency == Frequency.DAILY:
            return run_at - timedelta(days=1), run_at
        if self.frequency == Frequency.WEEKLY:
            return run_at - timedelta(days=7), run_at
        return datetime.combine(_month_before(run_at.date()), self.at, tzinfo=UTC), run_at

    def claim_due(self, now: datetime) -> Report | None:
        """If due, move ``next_run_at`` on and create this period's report: exactly once,
        however many dispatchers race (conditional UPDATE, then a unique period)."""
        due_at = self.next_run_at
        if due_at is None or due_at > now:
            return None
        rows = ReportSchedule.objects.filter(pk=self.pk, enabled=True, next_run_at=due_at).update(next_run_at=self.run_after(max(now, due_at)))
        if rows != 1:
            return None
        start, end = self.period_before(due_at)
        report, created = Report.objects.get_or_create(
            schedule=self, period_end=end, defaults={"period_start": start, "labels": self.labels, "title": self.name}
        )
        return report if created else None

    def save(self, *args: object, **kwargs: object) -> None:
        if self.next_run_at is None:
            self.next_run_at = self.run_after(timezone.now())
        super().save(*args, **kwargs)


class Report(models.Model):
    schedule = models.ForeignKey(ReportSchedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="reports")
    title = models.CharField(max_length=200)
    labels = models.JSONField(default=dict, blank=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=12, choices=ReportStatus, default=ReportStatus.QUEUED)
    error = models.TextField(blank=True)
    file = models.FileField(storage=report_storage, upload_to="%Y/%m/", blank=True)
    size = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    hosts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    finished_at = models.DateTimeField(null=True, blank=True)
    emailed_to = models.JSONField(default=list, blank=True)
    # The render lock: one task id holds a RENDERING report until it finishes or the lease runs out.
    claim_token = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["schedule", "period_end"], name="one_report_per_period")]

    def __str__(self) -> str:
        return f"{self.title} ({self.period_start:%d %b} – {self.period_end:%d %b %Y})"

    @property
    def scope_label(self) -> str:
        return describe(self.labels)

    @property
    def filename(self) -> str:
        return f"posture-{self.period_end:%Y-%m-%d}-{self.pk}.pdf"

    @property
    def is_ready(self) -> bool:
        return self.status == ReportStatus.READY

    def claim(self, token: str, now: datetime | None = None) -> bool:
        """QUEUED → RENDERING for exactly one task. A RENDERING report is taken back only by
        the same task re-delivered after its worker died, or by anyone once its lease ran
        out; a FAILED one only by its own task's retry."""
        now = now or timezone.now()
        free = (
            Q(status=ReportStatus.QUEUED)
            | Q(status__in=[ReportStatus.RENDERING, ReportStatus.FAILED], claim_token=token)  # a re-delivery or a retry
            | Q(status=ReportStatus.RENDERING, lease_until__lt=now)
        )
        until = now + timedelta(seconds=settings.REPORT_TIME_LIMIT + 30)
        rows = Report.objects.filter(free, pk=self.pk).update(status=ReportStatus.RENDERING, claim_token=token, lease_until=until)
        return rows == 1

    def store(self, data: bytes, *, pages: int, hosts: int) -> None:
        self.file.save(self.filename, ContentFile(data), save=False)
        self.size, self.pages, self.hosts = len(data), pages, hosts
        self.status, self.error, self.finished_at = ReportStatus.READY, "", timezone.now()
        self.save()

    def fail(self, error: str) -> None:
        self.status, self.error, self.finished_at = ReportStatus.FAILED, error, timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])

    @classmethod
    def request_now(cls, *, by: object, labels: dict[str, str], days: int = 7) -> Report:
        end = timezone.now()
        with transaction.atomic():
            report = cls.objects.create(title="On-demand report", labels=labels, period_start=end - timedelta(days=days), period_end=end, created_by=by)
            AuditEntry.log(by, AuditAction.REPORT_GENERATE, report)
        return report
