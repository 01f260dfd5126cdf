"""The poll pipeline's cost and throughput: ``python -m tests.bench_pipeline``; ``run()`` for ``make bench``.

Measured on real parts: PostgreSQL (its own database, ``posture_bench_pipeline``),
Redis, real prefork Celery workers and beat started through ``manage.py serve``'s
command lines, and a simulated fleet (``manage.py simulate``, a process of its own).
Nothing here asserts a time; ``run()`` returns the markdown section for
docs/benchmarks.md.

Phases (autovacuum is off on this machine's PostgreSQL, so each phase starts after a
VACUUM):

1. in-process, one host at a time: the engine floor (a bare kept-alive client listing
   containers, reading ``/info`` and listing networks), then per unchanged and per
   changed poll: wall time, CPU (the polling thread plus its PostgreSQL backend),
   queries, rows written, WAL; and a profile of unchanged polls (cProfile, top entries);
2. throughput: polls a minute, unchanged and changed, through Redis and a real worker;
3. a 2,000-host fleet at a 60 s interval under beat: hosts never polled, dispatch lag
   p50/p95, database size per 1,000 polls.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from posture.models import DockerHost, PollRun, PollStatus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
DB_NAME = "posture_bench_pipeline"


# --- measuring ------------------------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (a worker and its pool)."""
    total = _proc_cpu(pid)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += _tree_cpu(int(child))
    return total


def _pg_backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def _sql(query: str) -> Any:
    with connection.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def _rows_written() -> int:
    """Rows inserted, updated and deleted in this database so far (this backend's stats flushed)."""
    _sql("SELECT pg_stat_force_next_flush()")
    return int(_sql("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"))


def _wal() -> int:
    return int(_sql("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


def _vacuum() -> None:
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")


def _db_size() -> int:
    return int(_sql("SELECT pg_database_size(current_database())"))


def machine_load() -> str:
    """The machine's load before a phase: load average and the share of CPU busy over a second."""

    def stat() -> tuple[int, int]:
        parts = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(parts), parts[3] + parts[4]

    total0, idle0 = stat()
    time.sleep(1)
    total1, idle1 = stat()
    busy = 100 * (1 - (idle1 - idle0) / max(1, total1 - total0))
    return f"load average {os.getloadavg()[0]:.2f}, {busy:.0f}% busy just before"


@dataclass
class PerPoll:
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    wal: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        med = statistics.median
        return {
            "wall_ms": round(med(self.wall_ms), 2),
            "cpu_ms": round(med(self.cpu_ms), 2),
            "queries": med(self.queries),
            "rows": med(self.rows),
            "wal_bytes": med(self.wal),
        }


# --- the simulated fleet in its own process -------------------------------------------


@contextlib.contextmanager
def simulator(hosts: int, *, containers: int = 50, churn: float = 0.0, interval: float = 10.0, seed: int = 1) -> Iterator[list[str]]:
    """``manage.py simulate`` in a process of its own; yields the engines' URLs."""
    with tempfile.TemporaryDirectory(prefix="posture-benchsim-") as where:
        cmd = [sys.executable, "manage.py", "simulate", "--hosts", str(hosts), "--containers", str(containers)]
        cmd += ["--churn", str(churn), "--interval", str(interval), "--dir", where, "--seed", str(seed)]
        log = Path(where) / "simulate.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            sockets = [Path(where) / f"sim-{i:04d}.sock" for i in range(1, hosts + 1)]
            deadline = time.monotonic() + 120
            while not all(s.exists() for s in sockets[-1:]) or b"simulating" not in log.read_bytes().lower():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the simulator did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield [f"unix://{s}" for s in sockets]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def register(urls: list[str], *, interval: int = 300, prefix: str = "sim") -> list[DockerHost]:
    hosts = [DockerHost(name=f"{prefix}-{i:04d}", url=url, poll_interval=interval, labels={"simulated": "true"}) for i, url in enumerate(urls, 1)]
    return DockerHost.objects.bulk_create(hosts, batch_size=1000)


# --- phase 1: one poll, in this process -------------------------------------------------


def engine_floor(url: str, rounds: int = 200) -> float:
    """Milliseconds for what an unchanged poll cannot avoid: list containers, /info, list networks."""
    import docker

    client = docker.APIClient(base_url=url, version="1.41")
    client.containers(all=True), client.info(), client.networks()  # connect
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.containers(all=True)
        client.info()
        client.networks()
        times.append(time.perf_counter() - started)
    client.close()
    return statistics.median(times) * 1000


def poll_once(host: DockerHost) -> PollRun | None:
    """One poll as the task runs it, whatever this checkout's polling API is."""
    from posture import polling

    host = DockerHost.objects.select_related("snapshot").defer("snapshot__data").get(pk=host.pk)
    return polling.poll(host)


def measure_polls(hosts: list[DockerHost], rounds: int, before_each: Callable[[int], None] | None = None) -> PerPoll:
    out = PerPoll()
    backend = _pg_backend_pid()
    for i in range(rounds):
        host = hosts[i % len(hosts)]
        if before_each:
            before_each(i)
        rows, wal, pg_cpu = _rows_written(), _wal(), _proc_cpu(backend)
        cpu, started = time.thread_time(), time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            run = poll_once(host)
        wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
        pg = _proc_cpu(backend) - pg_cpu
        out.wal.append(_wal() - wal)
        out.rows.append(_rows_written() - rows)
        out.queries.append(len(queries))
        out.wall_ms.append(wall * 1000)
        out.cpu_ms.append((cpu + pg) * 1000)
        if run is None or run.status != PollStatus.OK:
            raise RuntimeError(f"a benchmark poll of {host.name} did not succeed: {run and run.error}")
    return out


def profile_polls(hosts: list[DockerHost], rounds: int = 300, top: int = 28) -> str:
    # CPU time of this thread: on a shared machine, wall time would profile the neighbours.
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for i in range(rounds):
        poll_once(hosts[i % len(hosts)])
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    body = text.getvalue()
    # Keep the table: from the header line on, paths shortened.
    lines = body[body.index("   ncalls") :].rstrip().splitlines()
    site = str(Path(django.__file__).parent.parent)
    return "\n".join(line.replace(site + "/", "").replace(str(ROOT) + "/", "") for line in lines)


def phase_single(containers: int = 50) -> dict[str, Any]:
    from posture.simulate import simulated_fleet

    with simulator(10, containers=containers) as urls:
        hosts = register(urls)
        for host in hosts:
            poll_once(host)  # the first poll stores everything
        floor = engine_floor(urls[0])
        _vacuum()
        unchanged = measure_polls(hosts, 200)
        profile = profile_polls(hosts)
    # Changed polls: one container changes on the host before each poll (in-thread simulator:
    # the CPU counted is the polling thread's and PostgreSQL's, not the simulator's).
    with simulated_fleet(hosts=5, containers=containers, seed=2) as fleet:
        hosts = register(fleet.urls, prefix="churn")
        for host in hosts:
            poll_once(host)
        _vacuum()
        changed = measure_polls(hosts, 60, before_each=lambda i: fleet.churn(i % len(hosts), 1))
    return {"floor_ms": round(floor, 2), "unchanged": unchanged.summary(), "changed": changed.summary(), "profile": profile}


# --- the database ---------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database() -> Iterator[None]:
    """A database of its own, migrated; dropped afterwards."""
    if connection.vendor != "postgresql":
        raise SystemExit("the pipeline benchmark needs PostgreSQL: set DATABASE_URL")
    settings.DATABASES["default"]["TEST"]["NAME"] = f"{DB_NAME}_{os.environ.get('POSTURE_TEST_SLOT', '0')}"
    old = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


def main() -> None:
    with bench_database():
        started = time.perf_counter()
        print(machine_load())
        single = phase_single()
        print({k: v for k, v in single.items() if k != "profile"})
        print(single["profile"])
        print(f"{time.perf_counter() - started:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()
