"""``manage.py watch``: hold engines' event streams and poll hosts as soon as they change.

Run one or more, on any machines that reach the engines, the database and the broker:
hosts are shared out among them by leases in the database. SIGTERM or Ctrl-C stops
one cleanly (pending polls enqueued, hosts given back at once); a watcher that dies
without stopping loses its hosts to the others when its leases run out.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import signal
import socket
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture.watch.watcher import EventWatcher


def raise_open_files_limit() -> int:
    """One descriptor per stream: take the hard limit, not the usual soft 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


class Command(BaseCommand):
    help = "Watch every enabled host's engine events and enqueue a poll when containers or networks change."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="", help="this watcher's name in the database (default: host:pid:random, unique per run)")
        parser.add_argument("--max-hosts", type=int, default=settings.WATCH_MAX_HOSTS, help="hold at most this many hosts (POSTURE_WATCH_MAX_HOSTS)")

    def handle(self, *args: Any, name: str, max_hosts: int, **opts: Any) -> None:
        if max_hosts < 1:
            raise CommandError("--max-hosts must be at least 1")
        name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        if len(name) > 100:
            raise CommandError("--name must be at most 100 characters")
        files = raise_open_files_limit()
        if files < max_hosts + 100:
            self.stderr.write(f"warning: {files} open files allowed; {max_hosts} streams need more (raise the hard limit, ulimit -n)")
        watcher = EventWatcher(name, lease=settings.WATCH_LEASE, quiet=settings.WATCH_QUIET, max_delay=settings.WATCH_MAX_DELAY, max_hosts=max_hosts)
        asyncio.run(self._run(watcher))

    async def _run(self, watcher: EventWatcher) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, watcher.stop)
        await watcher.run()
