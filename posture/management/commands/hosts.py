"""``manage.py hosts add|list|remove|rotate-keys``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from posture.collector.text import printable
from posture.exports import host_listing
from posture.labels import parse_label_list
from posture.management.cli import command_error
from posture.models import DockerHost


def _read(path: str | None, what: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {what} file {path}: {exc.strerror}") from None


def _labels(values: list[str]) -> dict[str, str]:
    try:
        return parse_label_list(values)
    except ValidationError as exc:
        raise CommandError(f"label: {exc.messages[0]}") from None


class Command(BaseCommand):
    help = "Register, list and remove Docker hosts."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register a host")
        add.add_argument("name")
        add.add_argument("url", help="unix:///var/run/docker.sock, tcp://host:2376, ssh://user@host")
        add.add_argument("--tls-ca")
        add.add_argument("--tls-cert")
        add.add_argument("--tls-key")
        add.add_argument("--ssh-key")
        add.add_argument("--interval", type=int, help="seconds between polls")
        add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        add.add_argument("--insecure", action="store_true", help="allow plain tcp:// without TLS")
        add.add_argument("--disabled", action="store_true")
        add.add_argument("--host-listeners", action="store_true", help="also read the host's listening sockets (and, over ssh, its firewall), read-only")
        lst = sub.add_parser("list", help="list hosts")
        lst.add_argument("--format", choices=["table", "json"], default="table")
        rm = sub.add_parser("remove", help="remove a host and its history")
        rm.add_argument("name")
        sub.add_parser("rotate-keys", help="re-encrypt stored credentials under the first POSTURE_CREDENTIALS_KEY")

    def handle(self, *args: Any, action: str, **opts: Any) -> None:
        getattr(self, f"handle_{action.replace('-', '_')}")(**opts)

    def handle_add(
        self, *, name: str, url: str, interval: int | None, label: list[str], insecure: bool, disabled: bool, host_listeners: bool, **opts: Any
    ) -> None:
        if DockerHost.objects.filter(name=name).exists():
            raise CommandError(f"a host named {name!r} already exists")
        host = DockerHost(
            name=name,
            url=url,
            insecure=insecure,
            enabled=not disabled,
            host_listeners=host_listeners,
            labels=_labels(label),
            tls_ca=_read(opts["tls_ca"], "CA"),
            tls_cert=_read(opts["tls_cert"], "certificate"),
            tls_key=_read(opts["tls_key"], "key"),
            ssh_key=_read(opts["ssh_key"], "SSH key"),
        )
        if interval is not None:
            host.poll_interval = interval
        try:
            host.register(actor=None)
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write(f"added {host.name} ({host.url}), polled every {host.poll_interval}s")

    def handle_list(self, *, format: str, **opts: Any) -> None:
        rows = [host_listing(host) for host in DockerHost.objects.with_poll_counts().with_listener_errors()]
        if format == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            self.stdout.write(
                f"{r['name']:<24} {r['url']:<40} {'enabled' if r['enabled'] else 'disabled':<8} every {r['interval']}s  {r['last_status']:<11} {r['last_poll_at'] or 'never'}  {printable(r['last_error'])}"
            )

    def handle_remove(self, *, name: str, **opts: Any) -> None:
        host = DockerHost.objects.filter(name=name).first()
        if host is None:
            raise CommandError(f"no host named {name!r}")
        host.remove(actor=None)
        self.stdout.write(f"removed {name}")

    def handle_rotate_keys(self, **opts: Any) -> None:
        fields = ("tls_ca", "tls_cert", "tls_key", "ssh_key")
        count = 0
        with transaction.atomic():
            for host in DockerHost.objects.select_for_update():
                # Reading decrypts with any key; saving encrypts with the first.
                host.save(update_fields=list(fields))
                count += 1
        self.stdout.write(f"re-encrypted the credentials of {count} host(s) under the current key")
