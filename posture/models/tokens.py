"""API tokens: a high-entropy secret shown once, stored as its SHA-256 with a visible prefix.

A token is ``pst_<prefix>_<secret>``: the prefix (stored in clear) tells tokens apart in
lists and logs, the digest of the whole string is what a request is checked against.
SHA-256 without salt or stretching is enough here: the secret is 256 random bits, not a
password a person chose.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from .audit import AuditAction, AuditEntry

TOKEN_SCHEME = "pst"
# last_used_at is written at most this often per token: a busy script must not turn
# every read into a write.
LAST_USED_GRANULARITY = timedelta(seconds=60)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None) -> ApiTokenQuerySet:
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))

    def authenticate(self, token: str) -> ApiToken | None:
        """The usable token this string is, with its active user, in one query; None otherwise."""
        if not token.startswith(f"{TOKEN_SCHEME}_") or len(token) > 200:
            return None
        return self.usable().select_related("user").filter(digest=digest(token), user__is_active=True).first()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)  # authenticate(): one indexed lookup
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{TOKEN_SCHEME}_{self.prefix}… ({self.user_id})"

    @property
    def display(self) -> str:
        return f"{TOKEN_SCHEME}_{self.prefix}_…"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @classmethod
    def issue(cls, user: Any, *, actor: Any, name: str = "", days: int | None = None) -> tuple[ApiToken, str]:
        """A new token for ``user``: the row, and the secret string to show once (it is not kept)."""
        prefix = secrets.token_hex(4)
        secret = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        expires = timezone.now() + timedelta(days=days) if days else None
        with transaction.atomic():
            token = cls.objects.create(user=user, name=name, prefix=prefix, digest=digest(secret), expires_at=expires)
            AuditEntry.log(actor, AuditAction.TOKEN_ADD, token, user=user.get_username(), name=name, expires=expires.isoformat() if expires else None)
        return token, secret

    def revoke(self, *, actor: Any) -> None:
        with transaction.atomic():
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
            AuditEntry.log(actor, AuditAction.TOKEN_REVOKE, self, user=self.user.get_username())

    def touch(self, now: datetime | None = None) -> None:
        """Record use, at most once per ``LAST_USED_GRANULARITY`` (a conditional UPDATE)."""
        now = now or timezone.now()
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_GRANULARITY:
            return
        ApiToken.objects.filter(pk=self.pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_GRANULARITY)).update(last_used_at=now)
        self.last_used_at = now
