"""``manage.py channels add|list|test|remove``: where alerts go, for operators and scripts."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture.labels import parse_label_list
from posture.management.cli import command_error
from posture.models import AlertEvent, AlertRule, Channel, Severity
from posture.notify import service


def _events(text: str) -> list[str]:
    events = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in events if e not in AlertEvent.values]
    if unknown or not events:
        raise CommandError(f"--events: choose from {','.join(AlertEvent.values)}" + (f" (not {','.join(unknown)})" if unknown else ""))
    return events


class Command(BaseCommand):
    help = "Add, list, test and remove notification channels (Apprise URLs or e-mail)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="add a channel with one alert rule")
        add.add_argument("name")
        add.add_argument("url", metavar="APPRISE_URL", help="e.g. json://127.0.0.1:9000/hook, slack://…, or email:ops@example.com")
        add.add_argument("--min-severity", choices=Severity.values(), default=Severity.LOW.value)
        add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="only hosts with this label (repeatable)")
        add.add_argument("--rule", action="append", default=[], metavar="RULE_ID", help="only these rules (repeatable)")
        add.add_argument("--events", default="opened,reopened,unreachable", help=f"comma-separated: {','.join(AlertEvent.values)}")
        add.add_argument("--risk-points", type=int, default=10, help="for 'risk': alert when a host's score rises by this much in one poll")
        lst = sub.add_parser("list", help="list channels (secrets redacted)")
        lst.add_argument("--format", choices=["table", "json"], default="table")
        test = sub.add_parser("test", help="send a test message now; exit 1 if it fails")
        test.add_argument("name")
        rm = sub.add_parser("remove", help="remove a channel and its history")
        rm.add_argument("name")

    def handle(self, *args: Any, action: str, **opts: Any) -> None:
        getattr(self, f"handle_{action}")(**opts)

    def _get(self, name: str) -> Channel:
        channel = Channel.objects.filter(name=name).first()
        if channel is None:
            raise CommandError(f"no channel named {name!r}")
        return channel

    def handle_add(self, *, name: str, url: str, min_severity: str, label: list[str], rule: list[str], events: str, risk_points: int, **opts: Any) -> None:
        if Channel.objects.filter(name=name).exists():
            raise CommandError(f"a channel named {name!r} already exists")
        try:
            labels = parse_label_list(label)
            channel = service.new_channel(name, url)
            alert_rule = AlertRule(events=_events(events), min_severity=min_severity, labels=labels, rule_ids=rule, risk_points=risk_points)
            channel.add(actor=None, rule=alert_rule)
        except ValidationError as exc:
            raise command_error(exc) if hasattr(exc, "error_dict") else CommandError(exc.messages[0]) from None
        self.stdout.write(f"added {channel.name} ({channel.redacted}): {alert_rule.describe()}")

    def handle_list(self, *, format: str, **opts: Any) -> None:
        rows = [service.describe(c) for c in Channel.objects.with_rules()]
        if format == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            state = "failing" if r["failing"] else ("ok" if r["enabled"] else "disabled")
            self.stdout.write(f"{r['name']:<20} {state:<8} {r['target']}")
            for rule in r["rules"]:
                self.stdout.write(f"{'':<20} - {rule['summary']}")

    def handle_test(self, *, name: str, **opts: Any) -> None:
        ok, message = service.test_channel(self._get(name), actor=None)
        if not ok:
            raise CommandError(f"{name}: {message}")
        self.stdout.write(f"{name}: {message}")

    def handle_remove(self, *, name: str, **opts: Any) -> None:
        self._get(name).remove(actor=None)
        self.stdout.write(f"removed {name}")
