"""``manage.py tokens add|list|revoke``: API tokens for scripts. A new token is printed
once, alone on the last line, so ``tail -n1`` takes it."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture.models import ApiToken


class Command(BaseCommand):
    help = "Create, list and revoke API tokens; a token carries its user's role."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a token for USER; printed once, on the last line")
        add.add_argument("username", metavar="USER")
        add.add_argument("--expires", type=int, metavar="DAYS", help="days until it expires (default: never)")
        add.add_argument("--name", default="", help="what it is for")
        lst = sub.add_parser("list", help="list tokens (never their secret)")
        lst.add_argument("--user", default="")
        lst.add_argument("--format", choices=["table", "json"], default="table")
        rev = sub.add_parser("revoke", help="revoke a token by its id")
        rev.add_argument("id", type=int)

    def handle(self, *args: Any, action: str, **opts: Any) -> None:
        getattr(self, f"handle_{action}")(**opts)

    def handle_add(self, *, username: str, expires: int | None, name: str, **opts: Any) -> None:
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user named {username!r}")
        if expires is not None and not 1 <= expires <= 3660:
            raise CommandError("--expires: a number of days from 1 to 3660")
        token, secret = ApiToken.issue(user, actor=None, name=name, days=expires)
        until = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
        self.stdout.write(f"token {token.pk} for {username} ({until}); shown once, keep it safe:")
        self.stdout.write(secret)

    def handle_list(self, *, user: str, format: str, **opts: Any) -> None:
        tokens = ApiToken.objects.select_related("user").order_by("pk")
        if user:
            tokens = tokens.filter(user__username=user)
        rows = [
            {
                "id": t.pk,
                "user": t.user.get_username(),
                "name": t.name,
                "token": t.display,
                "created_at": t.created_at.isoformat(),
                "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                "state": "revoked" if t.revoked_at else "expired" if t.is_expired else "active",
            }
            for t in tokens
        ]
        if format == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            used = r["last_used_at"][:16] if r["last_used_at"] else "never used"
            self.stdout.write(f"{r['id']:>5} {r['user']:<20} {r['token']:<18} {r['state']:<8} {used:<17} {r['name']}")

    def handle_revoke(self, *, id: int, **opts: Any) -> None:
        token = ApiToken.objects.select_related("user").filter(pk=id).first()
        if token is None:
            raise CommandError(f"no token with id {id}")
        if token.revoked_at:
            raise CommandError(f"token {id} is already revoked")
        token.revoke(actor=None)
        self.stdout.write(f"revoked token {id} of {token.user.get_username()}")
