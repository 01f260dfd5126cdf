"""Alerts: channels (where to send), alert rules (what to send), notifications (what was sent).

A *transition* is one thing that happened once: a finding opened by a poll, a host that
went down, a risk rise, an acceptance about to expire. Each has a stable key, and
``NotifiedTransition`` is unique per (channel, key): however often a poll is notified
(Celery retries, duplicate polls, a scan every minute), a channel hears of it once.
Deriving transitions is ``posture/notify/transitions.py``; sending is ``posture/notify/send.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator, validate_email
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from posture.labels import describe
from posture.rules import BY_ID

from .audit import AuditAction, AuditEntry
from .choices import Severity
from .fields import EncryptedTextField

channel_name = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", "Use letters, digits, dots, dashes and underscores, starting with a letter or digit.")


class AlertEvent(models.TextChoices):
    """What an alert rule can ask for; ``--events`` takes these values."""

    OPENED = "opened", "Finding opened"
    REOPENED = "reopened", "Finding reopened"
    UNREACHABLE = "unreachable", "Host unreachable or stale"
    RISK = "risk", "Risk up by N points"
    EXPIRING = "expiring", "Exception about to expire"


class ChannelKind(models.TextChoices):
    APPRISE = "apprise", "Apprise URL"
    EMAIL = "email", "E-mail"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


# The prefix that makes a channel target an e-mail list rather than an Apprise URL.
EMAIL_PREFIX = "email:"


@dataclass(frozen=True)
class Transition:
    """One alertable thing that happened once, identified by ``key`` for every channel.

    ``severity`` and ``rule_id`` are set for finding-level transitions; host-level ones
    (unreachable, risk) leave them empty and rules' severity and rule scopes do not apply.
    """

    key: str
    event: str  # an AlertEvent value
    host_id: int
    host_name: str
    host_labels: dict[str, str]
    title: str
    path: str  # the page that shows it, relative to POSTURE_BASE_URL
    severity: str = ""
    rule_id: str = ""
    subject: str = ""
    risk_delta: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "event": self.event,
            "host": self.host_name,
            "title": self.title,
            "path": self.path,
            "severity": self.severity,
            "rule_id": self.rule_id,
            "subject": self.subject,
            "risk_delta": self.risk_delta,
            "detail": self.detail,
        }


class ChannelQuerySet(models.QuerySet):
    def with_rules(self) -> ChannelQuerySet:
        return self.prefetch_related("rules")


class Channel(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[channel_name])
    kind = models.CharField(max_length=10, choices=ChannelKind, default=ChannelKind.APPRISE)
    # An Apprise URL or e-mail addresses; tokens and passwords live in it, so Fernet at rest.
    target = EncryptedTextField()
    # What the pages and commands show instead: secrets replaced (Apprise's privacy form).
    redacted = models.CharField(max_length=500)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Set when a notification gave up after its retries; cleared by the next success.
    failing_since = models.DateTimeField(null=True, blank=True)

    objects = ChannelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [("manage_channels", "Can configure notification channels")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_failing(self) -> bool:
        return self.failing_since is not None

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.target.removeprefix(EMAIL_PREFIX).split(",") if a.strip()]

    def set_target(self, target: str, *, redacted: str) -> None:
        """Take an Apprise URL, or ``email:a@x,b@y`` for Django's own mail settings.

        ``redacted`` is what may be shown from now on (the caller asks Apprise for it).
        """
        target = target.strip()
        if target.startswith(EMAIL_PREFIX):
            self.kind, self.target = ChannelKind.EMAIL, target
            for address in self.recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"target": f"“{address}” is not an e-mail address."}) from None
            if not self.recipients:
                raise ValidationError({"target": "name at least one address: email:ops@example.com"})
            self.redacted = target[:500]
        else:
            self.kind, self.target, self.redacted = ChannelKind.APPRISE, target, redacted[:500]

    def add(self, *, actor: Any, rule: AlertRule) -> None:
        """Save a new channel with its first rule and the audit entry, in one transaction."""
        self.full_clean(exclude=["redacted"])
        with transaction.atomic():
            self.save()
            rule.channel = self
            rule.full_clean()
            rule.save()
            AuditEntry.log(actor, AuditAction.CHANNEL_ADD, self, url=self.redacted, rule=rule.describe())

    def remove(self, *, actor: Any) -> None:
        with transaction.atomic():
            AuditEntry.log(actor, AuditAction.CHANNEL_REMOVE, self, url=self.redacted)
            self.delete()

    def record_success(self, at: datetime | None = None) -> None:
        at = at or timezone.now()
        Channel.objects.filter(pk=self.pk).update(last_success_at=at, failing_since=None)
        self.last_success_at, self.failing_since = at, None

    def record_failure(self, error: str, *, gave_up: bool, at: datetime | None = None) -> None:
        """Every failed attempt is shown (time, error); the channel is *failing* once a
        notification has run out of retries, until the next success."""
        at = at or timezone.now()
        fields: dict[str, Any] = {"last_failure_at": at, "last_error": error}
        if gave_up:
            # Keep the first time it gave up: "failing since" should not move on every failure.
            Channel.objects.filter(pk=self.pk, failing_since__isnull=True).update(failing_since=at)
        Channel.objects.filter(pk=self.pk).update(**fields)
        self.last_failure_at, self.last_error = at, error
        if gave_up and self.failing_since is None:
            self.failing_since = at


def _default_events() -> list[str]:
    return [AlertEvent.OPENED, AlertEvent.REOPENED, AlertEvent.UNREACHABLE]


class AlertRule(models.Model):
    """What one channel is sent: events, within a scope of host labels, severity and rules."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="rules")
    events = models.JSONField(default=_default_events)
    min_severity = models.CharField(max_length=10, choices=Severity.choices(), default=Severity.LOW.value)
    # Hosts whose labels include all of these; empty means every host.
    labels = models.JSONField(default=dict, blank=True)
    # Rule ids (posture.rules); empty means every rule.
    rule_ids = models.JSONField(default=list, blank=True)
    risk_points = models.PositiveSmallIntegerField(default=10, validators=[MinValueValidator(1), MaxValueValidator(100)])

    class Meta:
        ordering = ["channel", "pk"]

    def __str__(self) -> str:
        return f"{self.channel_id}: {self.describe()}"

    def clean(self) -> None:
        unknown = [e for e in self.events if e not in AlertEvent.values]
        if unknown or not self.events:
            raise ValidationError({"events": f"choose from {', '.join(AlertEvent.values)}" + (f" (not {', '.join(unknown)})" if unknown else "")})
        bad = [r for r in self.rule_ids if r not in BY_ID]
        if bad:
            raise ValidationError({"rule_ids": f"unknown rule id(s): {', '.join(bad)}"})

    def describe(self) -> str:
        parts = [", ".join(self.events), f"severity ≥ {self.min_severity}", describe(self.labels)]
        if self.rule_ids:
            parts.append("rules " + ", ".join(self.rule_ids))
        if AlertEvent.RISK in self.events:
            parts.append(f"risk +{self.risk_points}")
        return "; ".join(parts)

    def matches(self, t: Transition) -> bool:
        if t.event not in self.events:
            return False
        if any(t.host_labels.get(k) != v for k, v in self.labels.items()):
            return False
        if t.severity and Severity(t.severity).rank < Severity(self.min_severity).rank:
            return False
        if t.rule_id and self.rule_ids and t.rule_id not in self.rule_ids:
            return False
        return not (t.event == AlertEvent.RISK and t.risk_delta < self.risk_points)


class NotificationQuerySet(models.QuerySet):
    def claim(self, channels: Iterable[Channel], transitions: list[Transition], *, batch: str) -> list[Notification]:
        """One notification per channel for the transitions of ``batch`` it has not heard of.

        The unique (channel, key) constraint decides, so concurrent or repeated calls for
        the same transitions make each channel's message once. Call inside a transaction
        and enqueue the returned notifications on commit.
        """
        made: list[Notification] = []
        for channel in channels:
            wanted = [t for t in transitions if any(rule.matches(t) for rule in channel.rules.all())]
            if not wanted:
                continue
            note = self.create(channel=channel, batch=batch)
            NotifiedTransition.objects.bulk_create([NotifiedTransition(channel=channel, key=t.key, notification=note) for t in wanted], ignore_conflicts=True)
            mine = set(NotifiedTransition.objects.filter(notification=note).values_list("key", flat=True))
            if not mine:
                note.delete()  # every one of them was already sent (or is being sent) to this channel
                continue
            note.transitions = [t.as_json() for t in wanted if t.key in mine]
            note.save(update_fields=["transitions"])
            made.append(note)
        return made


class Notification(models.Model):
    """One message to one channel: every transition of a poll (or scan) grouped together."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    batch = models.CharField(max_length=100)  # poll:<id>, scan:<time>, test
    created_at = models.DateTimeField(auto_now_add=True)
    transitions = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=NotificationStatus, default=NotificationStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The send lock, as reports have: one task id holds a SENDING notification.
    claim_token = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["channel", "-created_at"], name="notification_recent")]  # channels page

    def __str__(self) -> str:
        return f"{self.channel_id} {self.batch} ({len(self.transitions)})"

    def acquire(self, token: str, now: datetime | None = None) -> bool:
        """PENDING → SENDING for one task; the same task re-delivered, or anyone once the
        lease ran out, may take it back. A SENT notification is never claimed again."""
        now = now or timezone.now()
        free = (
            Q(status=NotificationStatus.PENDING)
            | Q(status=NotificationStatus.SENDING, claim_token=token)
            | Q(status=NotificationStatus.SENDING, lease_until__lt=now)
        )
        until = now + timedelta(seconds=settings.NOTIFY_TIME_LIMIT + 30)
        return Notification.objects.filter(free, pk=self.pk).update(status=NotificationStatus.SENDING, claim_token=token, lease_until=until) == 1

    def mark_sent(self) -> None:
        now = timezone.now()
        self.status, self.sent_at, self.last_error, self.attempts = NotificationStatus.SENT, now, "", self.attempts + 1
        self.save(update_fields=["status", "sent_at", "last_error", "attempts"])
        self.channel.record_success(now)

    def mark_failed(self, error: str, *, gave_up: bool) -> None:
        """A failed attempt: back to PENDING for the retry, or FAILED when it gives up."""
        self.attempts += 1
        self.status, self.last_error = (NotificationStatus.FAILED if gave_up else NotificationStatus.PENDING), error
        self.save(update_fields=["status", "last_error", "attempts"])
        self.channel.record_failure(error, gave_up=gave_up)


class NotifiedTransition(models.Model):
    """The idempotency record: this channel has been (or is being) told about this key."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "key"], name="notify_once_per_channel")]
