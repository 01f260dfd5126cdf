"""``manage.py simulate``: a simulated fleet of Docker engines in the foreground.

    python manage.py simulate --hosts 50 --containers 50 --churn 0.2 --interval 30 --register

serves ``--hosts`` engines on unix sockets under ``--dir`` (``var/simulate/`` by default)
until Ctrl-C or SIGTERM, which stop it and remove its sockets. ``--register`` adds each
as a host named ``sim-0001``… labelled ``simulated=true``.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture.management.cli import command_error
from posture.models import DockerHost
from posture.simulate import Fleet, Simulator, SimulatorError

SIMULATED_LABEL = {"simulated": "true"}


def register_simulated(fleet: Fleet) -> int:
    """Add each simulated engine as a host unless one of its name exists; returns how many were added."""
    existing = set(DockerHost.objects.filter(name__in=[h.name for h in fleet.hosts]).values_list("name", flat=True))
    added = 0
    for sim, url in zip(fleet.hosts, fleet.urls, strict=True):
        if sim.name in existing:
            continue
        host = DockerHost(name=sim.name, url=url, labels=dict(SIMULATED_LABEL))
        try:
            host.register(actor=None)
        except ValidationError as exc:
            raise command_error(exc) from None
        added += 1
    return added


def _positive(kind: type, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{what} must be a number") from None
        if value < 0:
            raise ValueError(f"{what} must not be negative")
        return value

    parse.__name__ = what  # argparse names the type in its error
    return parse


class Command(BaseCommand):
    help = "Serve a simulated fleet of Docker engines on unix sockets until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hosts", type=_positive(int, "hosts"), required=True, help="how many engines")
        parser.add_argument("--containers", type=_positive(int, "containers"), default=50, help="containers per engine (default 50)")
        parser.add_argument(
            "--churn",
            type=_positive(float, "churn"),
            default=0.0,
            help="containers changed per host per interval; a fraction is a chance (0.1: one change per host every ten intervals on average)",
        )
        parser.add_argument("--interval", type=_positive(float, "interval"), default=10.0, help="seconds between churn rounds (default 10)")
        parser.add_argument("--dir", type=Path, default=None, help="where the sockets go (default: var/simulate/)")
        parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same fleet")
        parser.add_argument("--register", action="store_true", help="add each engine as a host labelled simulated=true")

    def handle(self, *args: Any, hosts: int, containers: int, churn: float, interval: float, dir: Path | None, seed: int, register: bool, **opts: Any) -> None:
        if hosts < 1:
            raise CommandError("--hosts must be at least 1")
        if interval <= 0:
            raise CommandError("--interval must be above 0")
        directory = dir or settings.VAR_DIR / "simulate"
        stopping = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._serve(Simulator(directory, hosts=hosts, containers=containers, seed=seed, churn=churn, interval=interval), register, stopping)
        except SimulatorError as exc:
            raise CommandError(str(exc)) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Simulator stopped; sockets removed.")

    def _serve(self, simulator: Simulator, register: bool, stopping: threading.Event) -> None:
        fleet = Fleet(simulator).start()
        try:
            added = register_simulated(fleet) if register else 0
            churning = f"churn {simulator.rate:g} per host every {simulator.interval:g}s" if simulator.rate else "no churn"
            self.stdout.write(
                self.style.SUCCESS(
                    f"Simulating {simulator.count} engines of {simulator.containers} containers in {simulator.directory} (seed {simulator.seed}, {churning})."
                )
            )
            if register:
                self.stdout.write(f"Registered {added} new host(s) labelled simulated=true ({simulator.count - added} already there).")
            self.stdout.write("Ctrl-C stops the simulator and removes its sockets.")
            self.stdout.flush()
            while not stopping.wait(0.5):
                pass
        finally:
            fleet.stop()
