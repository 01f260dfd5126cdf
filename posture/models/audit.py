"""Who changed what: host changes and risk acceptances, append-only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(max_length=150, blank=True)  # kept when the user is deleted
    action = models.CharField(max_length=50)
    target = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["-at"], name="audit_recent")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.target}"

    @classmethod
    def log(cls, actor: Any, action: str, target: object, **detail: Any) -> AuditEntry:
        user = actor if getattr(actor, "is_authenticated", False) else None
        name = getattr(actor, "username", "") or (str(actor) if actor else "system")
        return cls.objects.create(actor=user, actor_name=name, action=action, target=str(target)[:300], detail=detail)
