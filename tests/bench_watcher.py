"""What one watcher costs holding many streams: ``python -m tests.bench_watcher``.

A measurement for the benchmark, not a test. A simulated fleet (``posture.simulate``,
on a thread of this process) serves ``--hosts`` engines on unix sockets; one
``manage.py watch`` process holds all their ``/events`` streams against PostgreSQL and
the broker of ``REDIS_URL`` (no worker: polls are enqueued, not run). Printed: time to
connect every stream, the watcher's memory (baseline and per stream) and CPU (idle and
under churn, read from /proc), and event-to-enqueue latency from the watcher's log
(engine clock to broker, so it includes the debounce's quiet window by design).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/posture_7 REDIS_URL=redis://127.0.0.1:6379/8 \\
        .venv/bin/python -m tests.bench_watcher --hosts 1000
"""

from __future__ import annotations

import argparse
import json
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

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.test.utils import get_runner  # noqa: E402

from posture.models import DockerHost, HostWatch  # noqa: E402
from posture.simulate import simulated_fleet  # noqa: E402

from .processes import ROOT, process_env  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
ENQUEUED = re.compile(r"poll of (\S+) enqueued: (\d+) event\(s\) over ([\d.]+)s .*?; (\d+) ms after the first event, (\d+) ms after it arrived")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_mb(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: round(int(status[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM")}


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
        with tempfile.TemporaryDirectory(prefix="posture-bench-watch-") as tmp:
            results = measure(args.hosts, args.containers, args.churn, args.seconds, args.idle, Path(tmp))
    finally:
        runner.teardown_databases(old)
        if os.environ.get("REDIS_URL"):
            import redis

            redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # the polls nobody ran
    print(json.dumps(results, indent=2))
    r = results
    print(
        f"| watcher, {r['hosts']} simulated engines | one process, {r['open_streams']} open `/events` streams | "
        f"all connected in {r['connect_all_s']} s; RSS {r['held']['VmRSS']} MB ({r['kib_per_stream']} KiB a stream), "
        f"CPU {r['idle_cpu_pct']} % idle, {r['churn_cpu_pct']} % at {args.churn:g} changes/s; "
        f"event → poll enqueued p50 {r['event_to_enqueue_ms']['p50']:.0f} ms, p95 {r['event_to_enqueue_ms']['p95']:.0f} ms (quiet window {settings.WATCH_QUIET:g} s) |"
    )


if __name__ == "__main__":
    main()
