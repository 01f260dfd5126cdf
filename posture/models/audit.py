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
    SCHEDULE_ENABLE = "schedule.enable", "Report schedule resumed"
    SCHEDULE_DISABLE = "schedule.disable", "Report schedule paused"
    SCHEDULE_DELETE = "schedule.delete", "Report schedule removed"
    USER_ADD = "user.add", "User created"
    USER_ROLE = "user.role", "User role changed"


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
