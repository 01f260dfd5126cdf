"""``manage.py exceptions add|list|remove``: scoped acceptance for scripts."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture.exports import exception_listing
from posture.labels import parse_label_list
from posture.management.cli import command_error
from posture.models import DockerHost, ExceptionStatus, FindingStatus, RiskException, Severity
from posture.models.exceptions import start_of


def _day(text: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--expires: “{text}” is not a date YYYY-MM-DD") from None
    return start_of(day)  # like the page: it lapses at the start of that day, UTC


class Command(BaseCommand):
    help = "Create, list and remove exceptions (accepted risk for every finding a scope covers)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create an exception; prints its id and what it covers now")
        what = add.add_mutually_exclusive_group(required=True)
        what.add_argument("--rule", help="the rule it accepts")
        what.add_argument("--severity", choices=list(Severity), help="every rule of this severity and below")
        add.add_argument("--host", help="only on this host")
        add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="only on hosts with these labels (repeatable)")
        add.add_argument("--image", metavar="GLOB", help="only containers of this image (* and ? as wildcards)")
        add.add_argument("--project", metavar="NAME", help="only containers of this compose project")
        add.add_argument("--name", metavar="GLOB", help="only containers with this name (* and ? as wildcards)")
        add.add_argument("--justification", required=True)
        add.add_argument("--expires", required=True, metavar="YYYY-MM-DD", help="lapses at the start of this day (UTC), at most a year ahead")
        add.add_argument("--owner", metavar="USER", help="who answers for it")
        add.add_argument("--format", choices=["text", "json"], default="text")
        listing = sub.add_parser("list", help="active exceptions with what they cover now")
        listing.add_argument("--all", action="store_true", help="include expired and removed ones")
        listing.add_argument("--format", choices=["text", "json"], default="text")
        remove = sub.add_parser("remove", help="end an exception now; what it covered reopens")
        remove.add_argument("id", type=int)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(**options)

    def _add(self, *, rule: str | None, severity: str | None, host: str | None, label: list[str], image: str | None, project: str | None,
             name: str | None, justification: str, expires: str, owner: str | None, format: str, **_: Any) -> None:  # fmt: skip
        try:
            labels = parse_label_list(label)
        except ValidationError as exc:
            raise CommandError(f"--label: {exc.messages[0]}") from None
        target = DockerHost.objects.filter(name=host).first() if host else None
        if host and target is None:
            raise CommandError(f"no host named {host}")
        user = get_user_model().objects.filter(username=owner).first() if owner else None
        if owner and user is None:
            raise CommandError(f"no user named {owner}")
        try:
            exception = RiskException.objects.add(
                actor=None,
                rule_id=rule or "",
                max_severity=severity or "",
                host=target,
                labels=labels,
                image=image or "",
                project=project or "",
                name=name or "",
                justification=justification,
                owner=user,
                expires_at=_day(expires),
            )
        except ValidationError as exc:
            raise command_error(exc) from None
        covered = exception.covered.filter(status=FindingStatus.ACCEPTED)
        findings, hosts = covered.count(), covered.values("host").distinct().count()
        if format == "json":
            self.stdout.write(json.dumps({"id": exception.pk, "covered": findings, "hosts": hosts}))
        else:
            self.stdout.write(
                f"{exception.pk} covers {findings} open finding{'s' * (findings != 1)} on {hosts} host{'s' * (hosts != 1)}: {exception.describe()}"
            )

    def _list(self, *, all: bool, format: str, **_: Any) -> None:
        exceptions = RiskException.objects.with_coverage().select_related("host", "owner")
        if not all:
            exceptions = exceptions.filter(status=ExceptionStatus.ACTIVE)
        if format == "json":
            self.stdout.write(json.dumps([exception_listing(e) for e in exceptions], indent=2))
            return
        for e in exceptions:
            owner = e.owner.get_username() if e.owner else "—"
            self.stdout.write(f"{e.pk}\t{e.status}\t{e.expires_at:%Y-%m-%d}\t{owner}\t{e.covered_findings} findings/{e.covered_hosts} hosts\t{e.describe()}")

    def _remove(self, *, id: int, **_: Any) -> None:
        exception = RiskException.objects.filter(pk=id).select_related("host").first()
        if exception is None:
            raise CommandError(f"no exception {id}")
        if exception.status != ExceptionStatus.ACTIVE:
            raise CommandError(f"exception {id} already ended ({exception.status})")
        reopened = exception.remove(actor=None)
        self.stdout.write(f"removed exception {id}; {reopened} finding{'s' * (reopened != 1)} reopened")
