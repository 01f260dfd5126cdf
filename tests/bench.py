"""Benchmarks: ``make bench`` (``python -m tests.bench``) writes docs/benchmarks.md.

Measured on real parts: a Docker engine started here, PostgreSQL, WeasyPrint. Numbers
are wall-clock seconds and peak resident memory of the process doing the work.
Nothing here asserts a time: targets are read from the file, not enforced in tests.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import get_runner  # noqa: E402
from django.utils import timezone  # noqa: E402

from posture.collector.parse import build_snapshot  # noqa: E402
from posture.collector.snapshot import Connection, HostSnapshot  # noqa: E402
from posture.models import DockerHost, PollRun  # noqa: E402
from posture.reports import context  # noqa: E402
from posture.reports.pdf import render_pdf  # noqa: E402
from posture.rules import Evaluation, evaluate  # noqa: E402

from .engines import TestEngine  # noqa: E402
from .observe import snapshot_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "engine" / "mixed-exposure.json"


def in_child(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` in a forked child and return its result plus the child's peak RSS."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def run() -> None:
        connection.close()  # the child opens its own
        result = fn()
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        queue.put(result)

    proc = ctx.Process(target=run)
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def recorded_snapshot(copies: int = 1) -> HostSnapshot:
    raw = json.loads(FIXTURE.read_text())
    containers = []
    for i in range(copies):
        for c in raw["containers"]:
            clone = json.loads(json.dumps(c))
            clone["Id"] = f"{i:04d}{clone['Id'][4:]}"
            clone["Name"] = f"{clone['Name']}-{i}"
            labels = clone["Config"].get("Labels") or {}
            if "com.docker.compose.service" in labels:
                labels["com.docker.compose.container-number"] = str(i + 1)
            containers.append(clone)
    return build_snapshot(
        collected_at=timezone.now().isoformat(),
        connection=Connection(scheme="unix", address="unix:///var/run/docker.sock"),
        version=raw["version"],
        info=raw["info"],
        networks=raw["networks"],
        containers=containers,
    )


def bench_rules() -> dict[str, Any]:
    snap = recorded_snapshot(copies=100)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        specs = evaluate(snap, host_name="bench")
        runs.append(time.perf_counter() - started)
    return {"containers": len(snap.containers), "findings": len(specs), "median_s": round(statistics.median(runs), 4)}


def bench_reconcile() -> dict[str, Any]:
    snap = recorded_snapshot(copies=20)
    specs = evaluate(snap, host_name="bench")
    host = DockerHost.objects.create(name="bench-reconcile", url="unix:///bench.sock")
    timings = []
    for _ in range(3):
        run = PollRun.begin(host, "bench")
        started = time.perf_counter()
        host.apply_snapshot(snap, Evaluation(specs=specs), run)
        timings.append(time.perf_counter() - started)
    return {
        "containers": len(snap.containers),
        "findings": len(specs),
        "first_s": round(timings[0], 3),
        "unchanged_s": round(statistics.median(timings[1:]), 3),
    }


def bench_poll(engine: TestEngine, containers: int = 50) -> dict[str, Any]:
    for i in range(containers):
        engine.container(f"bench-{i}", ports={"80/tcp": 20000 + i} if i % 3 == 0 else None, cap_add=["NET_RAW"] if i % 5 == 0 else None)
    started = time.perf_counter()
    first = snapshot_of(engine.url)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    again = snapshot_of(engine.url, previous=first)
    warm = time.perf_counter() - started
    return {
        "containers": len(first.containers),
        "cold_s": round(cold, 3),
        "cold_api_calls": first.api_calls,
        "incremental_s": round(warm, 3),
        "incremental_api_calls": again.api_calls,
    }


def bench_report(hosts: int = 100) -> dict[str, Any]:
    DockerHost.objects.all().delete()  # exactly the benchmark's hosts
    snap = recorded_snapshot(copies=1)
    specs = evaluate(snap, host_name="bench")
    for i in range(hosts):
        host = DockerHost.objects.create(name=f"bench-{i:03d}", url=f"unix:///bench/{i}.sock", labels={"env": "prod" if i % 2 else "stage"})
        host.apply_snapshot(snap, Evaluation(specs=specs), PollRun.begin(host, "bench"))
    end = timezone.now()

    def render() -> dict[str, Any]:
        started = time.perf_counter()
        ctx = context.build(labels={}, start=end - timedelta(days=7), end=end, title="Benchmark")
        gathered = time.perf_counter()
        pdf = render_pdf(ctx)
        done = time.perf_counter()
        return {
            "hosts": len(ctx["hosts"]),
            "pages": pdf.pages,
            "bytes": len(pdf.data),
            "context_s": round(gathered - started, 2),
            "render_s": round(done - gathered, 2),
            "total_s": round(done - started, 2),
        }

    return in_child(render)


def main() -> None:
    settings.DATABASES["default"]["TEST"]["NAME"] = "posture_bench"  # never the real database
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    engine = TestEngine(name="bench", index=8).start()
    try:
        results = {
            "rules": bench_rules(),
            "reconcile": bench_reconcile(),
            "poll": bench_poll(engine),
            "report": bench_report(),
        }
    finally:
        engine.stop()
        runner.teardown_databases(old)
    write(results)
    print(json.dumps(results, indent=2))


def write(r: dict[str, Any]) -> None:
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {connection.vendor} database"
    rp, rr, pl, rc = r["report"], r["rules"], r["poll"], r["reconcile"]
    text = f"""# Benchmarks

Produced by `make bench` (that is, `python -m tests.bench` against PostgreSQL and a
Docker engine started for the run) on {timezone.now():%Y-%m-%d}, {machine}.
Re-run it after changing the collector, the rules, reconciliation or the report
templates, and commit the new file.

| what | measured | result |
|---|---|---|
| 100-host PDF report | {rp["hosts"]} hosts, {rp["pages"]} pages, {rp["bytes"] // 1024} KiB | **{rp["total_s"]} s** ({rp["context_s"]} s queries, {rp["render_s"]} s WeasyPrint), **peak RSS {rp["peak_rss_mb"]} MB** |
| poll of a real engine | {pl["containers"]} containers | cold {pl["cold_s"]} s / {pl["cold_api_calls"]} API calls; incremental {pl["incremental_s"]} s / {pl["incremental_api_calls"]} API calls |
| rule catalog | {rr["containers"]} containers → {rr["findings"]} findings | {rr["median_s"]} s (median of 5) |
| reconcile one poll | {rc["containers"]} containers, {rc["findings"]} findings | first {rc["first_s"]} s, unchanged {rc["unchanged_s"]} s |

Targets: a weekly 100-host report renders in under a minute and under 1 GiB (the
report worker's `--max-memory-per-child` default); an unchanged engine costs one list
call per kind plus inspects of what changed.

What keeps the report fast: only critical and high findings carry their full
remediation, medium and lower are one table row each, the change list is capped at
{context.MAX_CHANGES_LISTED} rows (the counts stay complete), trend charts use daily averages,
and the context is gathered in a fixed number of queries whatever the fleet size.
"""
    (ROOT / "docs" / "benchmarks.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
