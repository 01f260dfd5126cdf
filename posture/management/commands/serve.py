"""``manage.py serve``: web, workers, scheduler and event watcher together (and the simulator, for make demo), supervised; Ctrl-C stops them all.

Each child runs in a session of its own (Ctrl-C reaches them through us, in order) and
is told by the kernel to stop if this process dies (``PR_SET_PDEATHSIG``), so a killed
``serve`` leaves no orphaned beat dispatching twice. A child that exits is restarted
after a back-off that doubles while it keeps dying (1 s up to 30 s, reset once it has
run for ten seconds).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from posture.models.querysets import FAILING_QUEUE

PR_SET_PDEATHSIG = 1
RESTART_MIN, RESTART_MAX, HEALTHY_AFTER = 1.0, 30.0, 10.0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def commands(*, bind: str, port: int, concurrency: int, simulate: int = 0) -> dict[str, list[str]]:
    """What ``serve`` runs, by name (the README's systemd units run the same), with
    ``simulate`` fake engines first for ``make demo``."""
    py = sys.executable
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    celery = [py, "-m", "celery", "-A", "posture"]
    # prefork: only it enforces hard time limits on a hung engine call.
    worker = [*celery, "worker", "--pool", "prefork", "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
    simulator: dict[str, list[str]] = {}
    if simulate > 0:
        # Started first, so its sockets are up before the first poll; gentle churn so the
        # fleet keeps changing (each host about once an hour).
        simulator["simulator"] = [py, manage, "simulate", "--hosts", str(simulate), "--churn", "0.02", "--interval", "60"]
    return simulator | {
        "web": [py, "-m", "gunicorn", "posture.wsgi", "--bind", f"{bind}:{port}", "--workers", "2", "--access-logfile", "-"],
        "worker": [*worker, "--concurrency", str(concurrency), "-Q", "celery,reports,notify", "-n", "worker@%h"],
        # Failing hosts' polls, one at a time: a host that hangs until the deadline
        # cannot take the workers the others need. It helps with the rest when idle.
        "worker-failing": [*worker, "--concurrency", "1", "-Q", f"{FAILING_QUEUE},celery", "-n", "failing@%h"],
        "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        "watch": [py, manage, "watch"],
    }


@dataclass
class Child:
    name: str
    cmd: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_MIN
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, start_new_session=True, preexec_fn=_die_with_parent)
        self.started, self.restart_at = time.monotonic(), None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Command(BaseCommand):
    help = "Run gunicorn, Celery workers, Celery beat and the event watcher; restart any that exits; stop them all on Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1"))
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument(
            "--simulate",
            type=int,
            default=0,
            metavar="N",
            help="also serve N simulated engines (manage.py simulate, sockets in var/simulate/), as make demo does",
        )

    def handle(self, *args: Any, port: int, bind: str, concurrency: int, simulate: int, **opts: Any) -> None:
        children = [Child(name, cmd) for name, cmd in commands(bind=bind, port=port, concurrency=concurrency, simulate=simulate).items()]
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for child in children:
            child.start()
        broker = "Redis" if settings.REDIS_URL else "embedded filesystem broker"
        names = ", ".join(c.name for c in children)
        self.stdout.write(self.style.SUCCESS(f"Posture on http://{bind}:{port}/ ({names}; {broker}). Ctrl-C stops them all."))
        self.stdout.flush()
        while not stopping:
            self._supervise(children)
            time.sleep(0.5)
        self._stop_all(children)

    def _supervise(self, children: list[Child]) -> None:
        now = time.monotonic()
        for child in children:
            if child.running:
                if now - child.started > HEALTHY_AFTER:
                    child.delay = RESTART_MIN
                continue
            if child.restart_at is None:
                code = child.proc.returncode if child.proc else None
                child.restart_at = now + child.delay
                self.stderr.write(f"{child.name} exited with {code}; restarting it in {child.delay:g}s")
                child.delay = min(RESTART_MAX, child.delay * 2)
            elif now >= child.restart_at:
                child.restarts += 1
                child.start()
                self.stderr.write(f"{child.name} restarted (pid {child.proc.pid if child.proc else '?'})")

    def _stop_all(self, children: list[Child]) -> None:
        for child in children:
            if child.running and child.proc is not None:
                # The main processes stop their own children (gunicorn workers, the
                # Celery pool) gracefully; the whole group is killed only on time-out.
                child.proc.terminate()
        deadline = time.monotonic() + 20
        for child in children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        raise SystemExit(0)
