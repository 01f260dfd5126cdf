"""``manage.py users add|role|list``: accounts and their roles, for operators and scripts."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from posture.management.cli import command_error
from posture.models import AuditAction, AuditEntry
from posture.roles import ROLES, assign_role


class Command(BaseCommand):
    help = "Create users with a role, change a user's role, list users."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a user; the password is generated and printed once")
        add.add_argument("username")
        add.add_argument("--role", choices=sorted(ROLES), required=True)
        add.add_argument("--email", default="")
        role = sub.add_parser("role", help="give a user exactly this role")
        role.add_argument("username")
        role.add_argument("role", choices=sorted(ROLES))
        lst = sub.add_parser("list")
        lst.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args: Any, action: str, **opts: Any) -> None:
        getattr(self, f"handle_{action}")(**opts)

    @transaction.atomic
    def handle_add(self, *, username: str, role: str, email: str, **opts: Any) -> None:
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"a user named {username!r} already exists")
        user = User(username=username, email=email)
        try:
            user.full_clean(exclude=["password"])
        except ValidationError as exc:
            raise command_error(exc) from None
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        assign_role(user, role)
        AuditEntry.log(None, AuditAction.USER_ADD, user, role=role)
        self.stdout.write(f"created {username} ({role}) with password: {password}  (shown once)")

    @transaction.atomic
    def handle_role(self, *, username: str, role: str, **opts: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        assign_role(user, role)
        AuditEntry.log(None, AuditAction.USER_ROLE, user, role=role)
        self.stdout.write(f"{username} is now {role}")

    def handle_list(self, *, format: str, **opts: Any) -> None:
        rows = [
            {
                "username": u.username,
                "email": u.email,
                "roles": [g.name for g in u.groups.all()],
                "active": u.is_active,
                "last_login": u.last_login.isoformat() if u.last_login else None,
            }
            for u in get_user_model().objects.prefetch_related("groups").order_by("username")
        ]
        if format == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            self.stdout.write(f"{r['username']:<24} {','.join(r['roles']) or '(no role)':<10} {r['email']}")
