"""How fast the watcher sees a change, and what holding many streams costs. A section of
``make bench`` (``run()``), or alone: ``python -m tests.bench_watcher --hosts 1000``.

A measurement, not a test. Two parts:

- **Latency on a real engine**: a Docker engine started for the run, a prefork worker and
  one ``manage.py watch`` process (interval polls an hour away, no beat), and
  ``docker run --network host`` repeated: the time from the run to the poll that opened
  the host-network finding committing (what ``tests/test_watcher.py`` checks with a
  generous bound).
- **Many streams**: a simulated fleet (``posture.simulate``, on a thread of this process)
  serves ``--hosts`` engines on unix sockets; one ``manage.py watch`` process holds all
  their ``/events`` streams against PostgreSQL and the broker of ``REDIS_URL`` (no worker:
  polls are enqueued, not run). Recorded: time to connect every stream, the watcher's
  memory (baseline and per stream) and CPU (idle and under churn, read from /proc), and
  event-to-enqueue latency from the watcher's log (engine clock to broker, so it includes
  the debounce's quiet window by design).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import django
import redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.test.utils import get_runner  # noqa: E402

from posture.models import DockerHost, EventKind, FindingEvent, FindingStatus, HostWatch, PollRun, PollStatus  # noqa: E402
from posture.simulate import simulated_fleet  # noqa: E402

from .engines import TestEngine  # noqa: E402
from .processes import ROOT, celery_processes, process_env  # noqa: E402
from .procstat import cpu_seconds, memory_kib  # noqa: E402

ENQUEUED = re.compile(r"poll of (\S+) enqueued: (\d+) event\(s\) over ([\d.]+)s .*?; (\d+) ms after the first event, (\d+) ms after it arrived")


def memory_mb(pid: int) -> dict[str, float]:
    return {key: round(kib / 1024, 1) for key, kib in memory_kib(pid).items()}


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def measure(hosts: int, containers: int, churn_per_s: float, seconds: float, idle: float, var: Path) -> dict[str, Any]:
    env = process_env(var, REDIS_URL=os.environ.get("REDIS_URL", ""))
    log = settings.VAR_DIR / "bench-watcher.log"  # kept for reading after the run
    results: dict[str, Any] = {"hosts": hosts, "containers_per_host": containers}
    started = time.monotonic()
    with simulated_fleet(hosts=hosts, containers=containers, seed=1) as fleet:
        results["simulator_start_s"] = round(time.monotonic() - started, 1)
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            cmd = [sys.executable, "manage.py", "watch", "--name", "bench"]
            watcher = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait(lambda: b"started" in log.read_bytes(), 60, "the watcher to start")
            time.sleep(3)
            results["baseline"] = memory_mb(watcher.pid) | {"threads": threads(watcher.pid)}
            DockerHost.objects.bulk_create([DockerHost(name=f"sim-{i + 1:04d}", url=url, poll_interval=3600) for i, url in enumerate(fleet.urls)])
            cpu0 = cpu_seconds(watcher.pid)
            connected = HostWatch.objects.filter(watcher="bench", connected_at__isnull=False)
            results["connect_all_s"] = round(wait(lambda: connected.count() == hosts, 300, f"{hosts} streams to connect"), 1)
            results["connect_cpu_s"] = round(cpu_seconds(watcher.pid) - cpu0, 2)
            results["open_streams"] = sum(fleet.open_connections(i) for i in range(hosts))
            time.sleep(2)
            cpu0 = cpu_seconds(watcher.pid)
            time.sleep(idle)
            results["idle_cpu_pct"] = round(100 * (cpu_seconds(watcher.pid) - cpu0) / idle, 2)
            results["held"] = memory_mb(watcher.pid) | {"threads": threads(watcher.pid)}

            rng = random.Random(1)
            changes, deadline = 0, time.monotonic() + seconds
            cpu0, t0 = cpu_seconds(watcher.pid), time.monotonic()
            while time.monotonic() < deadline:
                tick = time.monotonic()
                for _ in range(int(churn_per_s) + (rng.random() < churn_per_s % 1)):
                    fleet.churn(rng.randrange(hosts), 1)
                    changes += 1
                time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
            results["churn_cpu_pct"] = round(100 * (cpu_seconds(watcher.pid) - cpu0) / (time.monotonic() - t0), 2)
            results["changes"] = changes
            time.sleep(settings.WATCH_MAX_DELAY + 2)  # the last bursts go out
            results["under_churn"] = memory_mb(watcher.pid)
            stop = time.monotonic()
            os.killpg(watcher.pid, signal.SIGTERM)
            watcher.wait(timeout=60)
            results["stop_s"] = round(time.monotonic() - stop, 1)
            results["released"] = not HostWatch.objects.exclude(watcher="").exists()
        finally:
            if watcher.poll() is None:
                os.killpg(watcher.pid, signal.SIGKILL)
    sent = [m.groups() for m in ENQUEUED.finditer(log.read_text(errors="replace"))]
    engine_ms = [float(s[3]) for s in sent]
    arrived_ms = [float(s[4]) for s in sent]
    results["polls_enqueued"] = len(sent)
    results["events"] = sum(int(s[1]) for s in sent)
    results["event_to_enqueue_ms"] = {"p50": percentile(engine_ms, 0.5), "p95": percentile(engine_ms, 0.95), "max": max(engine_ms, default=0)}
    results["arrival_to_enqueue_ms"] = {"p50": percentile(arrived_ms, 0.5), "p95": percentile(arrived_ms, 0.95)}
    per_stream = (results["held"]["VmRSS"] - results["baseline"]["VmRSS"]) * 1024 / hosts
    results["kib_per_stream"] = round(per_stream, 1)
    results["mean_events_per_poll"] = round(statistics.mean(int(s[1]) for s in sent), 1) if sent else 0
    return results


def real_engine_latency(var: Path, runs: int = 10) -> dict[str, Any]:
    """``docker run --network host`` → the poll that opened its finding committed, ``runs`` times."""
    engine = TestEngine(name="benchwatch", index=7).start()
    try:
        with celery_processes(os.environ["REDIS_URL"], var) as procs:
            host = DockerHost.objects.create(name="live", url=engine.url, poll_interval=3600)
            procs.start_worker()
            procs.start_watcher()
            live = HostWatch.objects.filter(host=host, connected_at__isnull=False, since_nano__isnull=False)
            wait(live.exists, 60, "the watcher to connect")
            latencies = []
            for i in range(runs):
                started = time.time()
                engine.container(f"edge-{i}", network_mode="host")
                opened = FindingEvent.objects.filter(
                    finding__host=host,
                    finding__rule_id="host-network",
                    finding__subject_name=f"edge-{i}",
                    finding__status=FindingStatus.OPEN,
                    kind=EventKind.OPENED,
                ).select_related("poll")
                wait(opened.exists, 60, "the host-network finding")
                latencies.append(opened.get().poll.finished_at.timestamp() - started)
                time.sleep(settings.WATCH_QUIET + 1)  # each run its own burst
    finally:
        engine.stop()
    return {
        "runs": runs,
        "median_s": round(statistics.median(latencies), 2),
        "p95_s": round(percentile(latencies, 0.95), 2),
        "max_s": round(max(latencies), 2),
        "polls": PollRun.objects.filter(host=host).count(),
        "failed": PollRun.objects.filter(host=host).exclude(status=PollStatus.OK).count(),
    }


def section(real: dict[str, Any], many: dict[str, Any], churn: float) -> str:
    r = many
    event = r["event_to_enqueue_ms"]
    return f"""## The watcher: a change in seconds, a thousand streams in one process

**`docker run --network host` → open finding**, on a real engine (started for the run), with
a prefork worker and one `manage.py watch` (interval polls an hour away): {real["runs"]} runs,
median **{real["median_s"]} s**, p95 **{real["p95_s"]} s**, worst {real["max_s"]} s (target: within 5 s),
from the `docker run` to the commit of the poll that opened the finding. Of it, the
watcher waits for {settings.WATCH_QUIET:g} s of quiet (`POSTURE_WATCH_QUIET`) so that a burst of events
(a `compose up`) is one poll; the rest is the poll itself. {real["polls"]} polls, {real["failed"]} failed.

**One watcher holding {r["hosts"]:,} streams** (simulated engines of {r["containers_per_host"]} containers on unix sockets,
no worker: polls are enqueued, not run):

| what | measured |
|---|---|
| streams open | {r["open_streams"]:,}, all connected {r["connect_all_s"]} s after the hosts were registered ({r["connect_cpu_s"]} s of CPU) |
| memory | {r["baseline"]["VmRSS"]} MB with no stream, {r["held"]["VmRSS"]} MB holding them: **{r["kib_per_stream"]} KiB a stream**; {r["under_churn"]["VmRSS"]} MB after the churn |
| threads | {r["held"]["threads"]} (asyncio: not a thread per host) |
| CPU, idle | **{r["idle_cpu_pct"]} %** of a core |
| CPU under churn | {r["churn_cpu_pct"]} % of a core at {churn:g} container changes a second ({r["changes"]} changes, {r["events"]} events, {r["polls_enqueued"]} polls enqueued: {r["mean_events_per_poll"]} events a poll) |
| event → poll enqueued | p50 {event["p50"]:.0f} ms, p95 **{event["p95"]:.0f} ms**, max {event["max"]:.0f} ms (engine clock to broker, the {settings.WATCH_QUIET:g} s quiet window included) |
| arrival → poll enqueued | p50 {r["arrival_to_enqueue_ms"]["p50"]:.0f} ms, p95 {r["arrival_to_enqueue_ms"]["p95"]:.0f} ms |
| stop (SIGTERM) | {r["stop_s"]} s, leases released: {"yes" if r["released"] else "**no**"} |

Target: at least 1,000 streams in one process on this machine.
"""


def run(hosts: int = 1000, containers: int = 20, churn: float = 10.0, seconds: float = 60.0, idle: float = 30.0) -> str:
    """The markdown section for docs/benchmarks.md (on make bench's database)."""
    with tempfile.TemporaryDirectory(prefix="posture-bench-watch-") as tmp:
        real = real_engine_latency(Path(tmp))
        DockerHost.objects.all().delete()
        try:
            many = measure(hosts, containers, churn, seconds, idle, Path(tmp))
        finally:
            redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # the polls nobody ran
    return section(real, many, churn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--churn", type=float, default=10.0, help="container changes a second, spread over random hosts")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    settings.DATABASES["default"]["TEST"]["NAME"] = "posture_bench_watch"  # never the real database
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    try:
        print(run(args.hosts, args.containers, args.churn, args.seconds, args.idle))
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
