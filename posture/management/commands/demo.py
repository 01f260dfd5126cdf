"""``manage.py demo``: register ``make demo``'s simulated fleet with a week of history.

    python manage.py demo --hosts 50

Does nothing when the database already has hosts: the demo keeps its own database
(``POSTURE_VAR_DIR=var/demo``), and its history is made once. ``serve --simulate 50``
then serves the hosts from the sockets they were registered with.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture import demo
from posture.models import DockerHost


class Command(BaseCommand):
    help = "Register a simulated fleet with a week of generated history (for make demo)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hosts", type=int, default=50)
        parser.add_argument("--days", type=float, default=7.0, help="how much history to generate (default 7)")
        parser.add_argument("--seed", type=int, default=0, help="the simulator's seed (serve --simulate uses 0)")

    def handle(self, *args: Any, hosts: int, days: float, seed: int, **opts: Any) -> None:
        if hosts < 1 or days <= 0:
            raise CommandError("--hosts must be at least 1 and --days above 0")
        if DockerHost.objects.exists():
            self.stdout.write(f"The demo fleet is there already ({DockerHost.objects.count()} hosts in {settings.VAR_DIR}).")
            return
        started = time.monotonic()
        self.stdout.write(f"Generating {days:g} days of history for {hosts} simulated hosts (once)…")
        self.stdout.flush()

        def progress(done: int) -> None:
            if done % 10 == 0 and done < hosts:
                self.stdout.write(f"  {done} of {hosts} hosts")
                self.stdout.flush()

        fleet = demo.build(settings.VAR_DIR / "simulate", hosts=hosts, days=days, seed=seed, progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Registered {fleet.hosts} hosts with {fleet.applied} polls of history in {time.monotonic() - started:.0f}s."))
