"""``manage.py findings [--host NAME] [--status ...] [--format json|csv|sarif]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture.exports import FORMATS
from posture.models import DockerHost, Finding, FindingStatus, Severity


class Command(BaseCommand):
    help = "Write findings to stdout for scripts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", action="append", default=[], help="host name (repeatable)")
        parser.add_argument("--status", choices=[*FindingStatus.values, "all"], default="open")
        parser.add_argument("--severity", choices=list(Severity), help="at least this severity")
        parser.add_argument("--format", choices=sorted(FORMATS), default="json")

    def handle(self, *args: Any, host: list[str], status: str, severity: str | None, format: str, **opts: Any) -> None:
        findings = Finding.objects.with_status(status).select_related("host")
        if host:
            known = set(DockerHost.objects.filter(name__in=host).values_list("name", flat=True))
            if set(host) - known:
                raise CommandError(f"no host named {', '.join(sorted(set(host) - known))}")
            findings = findings.filter(host__name__in=host)
        if severity:
            findings = findings.at_least(severity)
        self.stdout.write(FORMATS[format](findings.by_severity()))
