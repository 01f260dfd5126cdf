"""Real Celery worker and beat processes against the test database and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from posture.models import DockerHost, PollRun, PollStatus

from .conftest import need
from .waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def process_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that shares this test's database, broker and keys."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="posture.settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        SECRET_KEY=settings.SECRET_KEY,
        POSTURE_CREDENTIALS_KEY=",".join(settings.POSTURE_CREDENTIALS_KEYS),
        POSTURE_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@dataclass
class CeleryProcesses:
    var_dir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, name: str = "w1", concurrency: int = 2) -> subprocess.Popen:
        log = self.var_dir / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "posture", "worker", "--pool", "prefork", "--concurrency", str(concurrency)]
        cmd += ["-Q", "celery,reports,notify,polls-failing", "-n", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
        self.procs[name] = proc
        wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, timeout=60, what=f"worker {name} to be ready")
        assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    def start_beat(self) -> subprocess.Popen:
        log = self.var_dir / "beat.log"
        cmd = [sys.executable, "-m", "celery", "-A", "posture", "beat", "--loglevel", "INFO", "--schedule", str(self.var_dir / "beat-schedule")]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
        self.procs["beat"] = proc
        return proc

    def start_watcher(self, name: str = "watch", **env: str) -> subprocess.Popen:
        """``manage.py watch`` named ``name`` in the database too, so tests can find its leases."""
        log = self.var_dir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0  # a restart appends to the same log
        cmd = [sys.executable, "manage.py", "watch", "--name", name]
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **env}, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
        self.procs[name] = proc
        wait_for(lambda: b"started" in log.read_bytes()[offset:] or proc.poll() is not None, timeout=60, what=f"watcher {name} to start")
        assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up of any kind, as when a machine dies."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def children(self, name: str = "w1") -> list[int]:
        """Pool processes of a prefork worker."""
        pid = self.procs[name].pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def log(self, name: str) -> str:
        return (self.var_dir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def celery_processes(redis_url: str, var_dir: Path, **env: str) -> Iterator[CeleryProcesses]:
    """Processes (started by the caller) on this test's database and an emptied Redis
    database, with ``env`` on top; all stopped after the block."""
    if connection.vendor != "postgresql":
        need("worker and watcher processes share the test database only on PostgreSQL (set DATABASE_URL)")
    redis.Redis.from_url(redis_url).flushdb()
    procs = CeleryProcesses(var_dir=var_dir, env=process_env(var_dir, REDIS_URL=redis_url, **env))
    try:
        yield procs
    finally:
        procs.stop()


def ok_polls(host: DockerHost) -> list[PollRun]:
    return list(PollRun.objects.filter(host=host, status=PollStatus.OK).order_by("started_at"))
