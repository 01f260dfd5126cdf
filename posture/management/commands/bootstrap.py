"""``manage.py bootstrap``: what ``make run`` needs on a fresh install, idempotently."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser

from posture import polling
from posture.management.cli import command_error
from posture.models import DockerHost

LOCAL_ENGINE = "unix:///var/run/docker.sock"


class Command(BaseCommand):
    help = "Create the first admin (if none) and register the local engine (if it answers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--engine", default=os.environ.get("POSTURE_LOCAL_ENGINE", LOCAL_ENGINE))

    def handle(self, *args: Any, engine: str, **opts: Any) -> None:
        User = get_user_model()
        if not User.objects.filter(is_superuser=True).exists():
            password = os.environ.get("POSTURE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            admin = User.objects.create_superuser("admin", "admin@localhost", password)
            admin.groups.add(Group.objects.get(name="Admin"))
            shown = "from POSTURE_ADMIN_PASSWORD" if os.environ.get("POSTURE_ADMIN_PASSWORD") else password
            self.stdout.write(self.style.SUCCESS(f"Created user 'admin' with password: {shown}  (shown once; change it after logging in)"))
        if DockerHost.objects.exists():
            return
        host = DockerHost(name="local", url=engine, labels={"env": "local"})
        ok, version = polling.test_connection(host)
        if not ok:
            self.stdout.write(f"No local engine registered: {version}. Add hosts with 'manage.py hosts add'.")
            return
        try:
            host.register(actor=None)
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write(f"Registered the local engine as 'local' ({version}).")
