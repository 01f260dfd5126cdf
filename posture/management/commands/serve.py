"""``manage.py serve``: web, worker and scheduler together (and the simulator, for make demo); Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run gunicorn, a Celery worker and Celery beat; stop them all on Ctrl-C or when one exits."

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
        py = sys.executable
        commands: dict[str, list[str]] = {}
        if simulate > 0:
            # Started first, so its sockets are up before the first poll; gentle churn so
            # the fleet keeps changing (each host about once an hour).
            manage = str(Path(settings.BASE_DIR) / "manage.py")
            commands["simulator"] = [py, manage, "simulate", "--hosts", str(simulate), "--churn", "0.02", "--interval", "60"]
        commands |= {
            "web": [py, "-m", "gunicorn", "posture.wsgi", "--bind", f"{bind}:{port}", "--workers", "2", "--access-logfile", "-"],
            # prefork: only it enforces hard time limits on a hung engine call.
            "worker": [
                py,
                "-m",
                "celery",
                "-A",
                "posture",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "-Q",
                "celery,reports",
                "--loglevel",
                "INFO",
            ],
            "beat": [py, "-m", "celery", "-A", "posture", "beat", "--loglevel", "INFO", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()}
        broker = "Redis" if settings.REDIS_URL else "embedded filesystem broker"
        self.stdout.write(self.style.SUCCESS(f"Posture on http://{bind}:{port}/ ({', '.join(commands)}; {broker}). Ctrl-C stops them all."))
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping the others")
                    code, stopping = proc.returncode or 1, True
            time.sleep(0.5)
        for proc in procs.values():
            if proc.poll() is None:
                # The main processes stop their own children (gunicorn workers, the
                # Celery pool) gracefully; the whole group is killed only on time-out.
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(code)
