"""``manage.py poll NAME [NAME ...] | --all``: poll synchronously, for operators and scripts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture import polling
from posture.collector.text import printable
from posture.models import DockerHost
from posture.tasks import notify_poll


class Command(BaseCommand):
    help = "Poll hosts now, in this process, and print a summary. Exit 1 if any cannot be read."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*")
        parser.add_argument("--all", action="store_true", help="every enabled host")

    def handle(self, *args: Any, names: list[str], all: bool, **opts: Any) -> None:
        if all:
            hosts = list(DockerHost.objects.select_related("snapshot").filter(enabled=True))
        elif names:
            hosts = list(DockerHost.objects.select_related("snapshot").filter(name__in=names))
            missing = set(names) - {h.name for h in hosts}
            if missing:
                raise CommandError(f"no host named {', '.join(sorted(missing))}")
        else:
            raise CommandError("name a host, or use --all")
        failed = []
        for host in hosts:
            run = polling.poll(host)
            if run is not None:
                notify_poll.delay_on_commit(run.pk)  # alerts, as for scheduled polls
            if run is None:
                self.stderr.write(f"{host.name}: another poll is running; try again shortly")
                failed.append(host.name)
            elif not run.succeeded:
                self.stderr.write(f"{host.name}: {printable(run.error)}")  # engine text: no terminal escapes
                failed.append(host.name)
            else:
                self.stdout.write(
                    f"{host.name}: ok in {run.duration.total_seconds():.1f}s, {run.containers} containers, "
                    f"{run.findings_open} open findings ({run.opened} new, {run.resolved} resolved, {run.reopened} reopened), "
                    f"risk {host.risk_score}/100, {run.api_calls} API calls"
                )
        if failed:
            raise SystemExit(1)
