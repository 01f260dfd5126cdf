"""Who changed what: host changes, risk decisions, reports, users; append-only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    HOST_ADD = "host.add", "Host registered"
    HOST_EDIT = "host.edit", "Host edited"
    HOST_REMOVE = "host.remove", "Host removed"
    HOST_POLL = "host.poll", "Poll requested"
    FINDING_ACCEPT = "finding.accept", "Risk accepted"
    EXCEPTION_ADD = "exception.add", "Exception created"
    EXCEPTION_EDIT = "exception.edit", "Exception edited"
    EXCEPTION_EXPIRE = "exception.expire", "Exception expired"
    EXCEPTION_REMOVE = "exception.remove", "Exception removed"
    REPORT_GENERATE = "report.generate", "Report requested"
    SCHEDULE_ADD = "schedule.add", "Report schedule added"
    SCHEDULE_CHANGE = "schedule.change", "Report schedule changed"
    SCHEDULE_ENABLE = "schedule.enable", "Report schedule resumed"
    SCHEDULE_DISABLE = "schedule.disable", "Report schedule paused"
    SCHEDULE_DELETE = "schedule.delete", "Report schedule removed"
    USER_ADD = "user.add", "User created"
    USER_CHANGE = "user.change", "User changed"
    USER_REMOVE = "user.remove", "User removed"
    USER_ROLE = "user.role", "User role changed"
    CHANNEL_ADD = "channel.add", "Notification channel added"
    CHANNEL_EDIT = "channel.edit", "Notification channel paused or resumed"
    CHANNEL_REMOVE = "channel.remove", "Notification channel removed"
    CHANNEL_TEST = "channel.test", "Notification channel tested"
    ALERT_RULE_ADD = "alert_rule.add", "Alert rule added"
    ALERT_RULE_REMOVE = "alert_rule.remove", "Alert rule removed"
    TOKEN_ADD = "token.add", "API token created"
    TOKEN_REVOKE = "token.revoke", "API token revoked"


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(max_length=150, blank=True)  # kept when the user is deleted
    action = models.CharField(max_length=50, choices=AuditAction)
    target = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["-at"], name="audit_recent")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.target}"

    @classmethod
    def log(cls, actor: Any, action: AuditAction, target: object, **detail: Any) -> AuditEntry:
        """Record one change. Call it inside the transaction that makes the change, so the
        entry and the change are written together or not at all."""
        user = actor if getattr(actor, "is_authenticated", False) else None
        name = getattr(actor, "username", "") or (str(actor) if actor else "system")
        return cls.objects.create(actor=user, actor_name=name, action=action, target=str(target)[:300], detail=detail)
