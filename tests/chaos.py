"""The chaos suite's own servers and processes: a PostgreSQL and a Redis on free ports
that it may kill and restart (never the machine's own), and ``manage.py serve`` against
them — web, workers and beat, supervised as in production.

Everything here is a real part; only the faults are injected.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from .waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """PostgreSQL refuses to run as root: its tools run as the postgres user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kwargs)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None)
    if not found:
        raise FileNotFoundError(f"{name} (PostgreSQL server binaries) is not installed")
    return str(found)


@dataclass
class PrivatePostgres:
    """A throw-away cluster in a temporary directory; ``kill()`` is an immediate shutdown."""

    workdir: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.data = self.workdir / "pgdata"
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.data, "postgres")
        _as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/posture"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=60"
        _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.workdir / "pg.log"), "-w", "start"])

    def kill(self) -> None:
        _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])

    def create(self) -> None:
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE posture")

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"])


@dataclass
class PrivateRedis:
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        wait_for(lambda: _pings(redis.Redis(port=self.port, socket_connect_timeout=1)), timeout=20, what="the private Redis")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    stop = kill


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@dataclass
class Pipeline:
    """``manage.py serve`` (web, worker, worker-failing, beat) on the private servers."""

    workdir: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    settings: dict[str, str]
    serve: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="posture.settings",
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            POSTURE_VAR_DIR=str(self.workdir / "var"),
            SECRET_KEY="chaos-" * 10,
            PYTHONUNBUFFERED="1",
            **self.settings,
        )
        return env

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def start(self) -> None:
        log = open(self.workdir / "serve.log", "ab")  # noqa: SIM115 - kept open for the child
        cmd = [sys.executable, "manage.py", "serve", "--port", str(free_port()), "--concurrency", "2"]
        self.serve = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.child("worker") and b"ready." in self.log_bytes(), timeout=90, what="serve's worker to be ready")

    def log_bytes(self) -> bytes:
        return (self.workdir / "serve.log").read_bytes()

    def children(self) -> dict[str, int]:
        """serve's children by name (from their command lines)."""
        if self.serve is None:
            return {}
        found = {}
        with contextlib.suppress(OSError):
            for pid in Path(f"/proc/{self.serve.pid}/task/{self.serve.pid}/children").read_text().split():
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    found[_child_name(cmdline)] = int(pid)
        return found

    def child(self, name: str) -> int | None:
        return self.children().get(name)

    def pool(self, name: str = "worker") -> list[int]:
        pid = self.child(name)
        if pid is None:
            return []
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return []

    def kill_group(self, name: str) -> int:
        """SIGKILL a child of serve and everything it started (a worker and its pool)."""
        pid = self.child(name)
        assert pid is not None, f"serve has no {name} running"
        os.killpg(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.serve.pid, signal.SIGKILL)
                self.serve.wait()


def _child_name(cmdline: list[bytes]) -> str:
    text = b" ".join(cmdline)
    for marker, name in ((b"failing@", "worker-failing"), (b"worker@", "worker"), (b" beat", "beat"), (b"gunicorn", "web")):
        if marker in text:
            return name
    return text[:40].decode(errors="replace")


@contextlib.contextmanager
def private_servers() -> Any:
    workdir = Path(tempfile.mkdtemp(prefix="posture-chaos-"))
    os.chmod(workdir, 0o755)
    pg = PrivatePostgres(workdir / "pg")
    redis = PrivateRedis(workdir)
    pg.start()
    redis.start()
    try:
        pg.create()
        yield workdir, pg, redis
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def since(seconds_ago: float = 0) -> float:
    return time.time() - seconds_ago
