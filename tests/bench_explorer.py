"""Server time of the findings explorer on a fleet-sized database (``tests/bench_data.py``),
and the memory of streaming every finding out. A section of ``make bench`` (``run()``), or
on a database of your own:

    DATABASE_URL=postgres://…/bench python -m tests.bench_explorer [--build] [--repeat 20]

Each scenario is a URL a person would open (filters, the grouped view, a deep page, an
htmx partial); each is requested ``repeat`` times through Django's test client, in
process, so the time is the server's: view, queries and template, no network. Recorded:
p50/p95 per scenario and over all requests, and the query count of each. Each export
(the page's, and ``manage.py findings`` in every format) runs in a process of its own so
that its peak RSS is the export's, not this process's. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from posture.models import DockerHost, RiskException  # noqa: E402

from .bench_data import build_fleet  # noqa: E402
from .processes import ROOT, process_env  # noqa: E402
from .procstat import memory_kib  # noqa: E402

SCENARIOS = [
    ("open findings, page 1", "/findings/", {}),
    ("critical and worse", "/findings/?severity=critical", {}),
    ("one rule", "/findings/?rule=docker-socket-mounted", {}),
    ("host label", "/findings/?label=env%3Dprod", {}),
    ("image prefix glob", "/findings/?image=traefik%3A*", {}),
    ("image infix glob", "/findings/?image=*app-1*", {}),
    ("container name glob", "/findings/?name=shop-*", {}),
    ("compose project", "/findings/?project=billing", {}),
    ("free text", "/findings/?q=redis", {}),
    ("new this week", "/findings/?since=7d", {}),
    ("all statuses", "/findings/?status=all", {}),
    ("resolved this week", "/findings/?status=resolved&resolved_since=7d", {}),
    ("one host", "/findings/?host=host-00042", {}),
    ("covered by an exception", "/findings/?exception=1&status=accepted", {}),
    ("page 100", "/findings/?page=100", {}),
    ("rule + label + image", "/findings/?rule=port-sensitive-service-exposed&label=env%3Dprod&image=redis%3A*", {}),
    ("grouped by rule", "/findings/?view=rules", {}),
    ("grouped, one team", "/findings/?view=rules&label=team%3Dpayments", {}),
    ("group hosts (htmx)", "/findings/?view=rules&group=privileged&part=group-hosts", {"HTTP_HX_REQUEST": "true"}),
    ("filter change (htmx)", "/findings/?severity=high&label=env%3Dstage", {"HTTP_HX_REQUEST": "true"}),
]


class QueryCounter:
    """Counted at the cursor: the test client's request_finished closes the connection,
    which empties Django's own query log."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def _client() -> Client:
    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get(name="Viewer"))
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(repeat: int = 20) -> dict[str, Any]:
    client = _client()
    rows, everything = [], []
    for label, url, headers in SCENARIOS:
        client.get(url, **headers)  # warm the plan and the caches once
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            status = client.get(url, **headers).status_code
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(url, **headers)
            times.append((time.perf_counter() - started) * 1000)
        everything += times
        rows.append({"scenario": label, "url": url, "status": status, "queries": counter.count,
                     "p50_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 0.95), 1)})  # fmt: skip
    return {
        "hosts": DockerHost.objects.count(),
        "requests": len(everything),
        "p50_ms": round(statistics.median(everything), 1),
        "p95_ms": round(percentile(everything, 0.95), 1),
        "scenarios": rows,
    }


def export_in_this_process(url: str) -> dict[str, Any]:
    """Stream ``url`` through the test client and count what came out (run in a child)."""
    client = _client()
    started = time.perf_counter()
    response = client.get(url)
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    return {"bytes": size, "lines": lines, "seconds": time.perf_counter() - started, "peak_rss_kib": memory_kib()["VmHWM"]}


def export_in_a_child(var: Path, what: str, command: list[str]) -> dict[str, Any]:
    """Run ``command`` on this database, count its standard output, take its peak RSS
    (VmHWM, sampled every 50 ms while it runs)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=process_env(var), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks = [0]

    def sample() -> None:  # until the child exits, however little it writes
        while proc.poll() is None:
            peaks.append(memory_kib(proc.pid).get("VmHWM", 0))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size = lines = 0
    last = b""
    while chunk := proc.stdout.read(1 << 20):
        size += len(chunk)
        lines += chunk.count(b"\n")
        last = chunk[-4096:]
    sampler.join()
    peak = max(peaks)
    if proc.returncode:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    result = {"what": what, "bytes": size, "lines": lines, "seconds": time.perf_counter() - started, "peak_rss_kib": peak}
    if command[-2:-1] == ["--export"]:  # the child printed what it streamed and its own peak, not the stream
        child = json.loads(last.rsplit(b"\n", 2)[-2])
        result.update(bytes=child["bytes"], lines=child["lines"], peak_rss_kib=child["peak_rss_kib"])
    return result


def exports(var: Path) -> list[dict[str, Any]]:
    me = [sys.executable, "-m", "tests.bench_explorer"]
    cli = [sys.executable, "manage.py", "findings", "--status", "all", "--format"]
    return [
        export_in_a_child(var, "page export, CSV (`/findings/export.csv?status=all`)", [*me, "--export", "/findings/export.csv?status=all"]),
        export_in_a_child(var, "page export, SARIF", [*me, "--export", "/findings/export.sarif?status=all"]),
        export_in_a_child(var, "`manage.py findings --format csv`", [*cli, "csv"]),
        export_in_a_child(var, "`manage.py findings --format json`", [*cli, "json"]),
        export_in_a_child(var, "`manage.py findings --format sarif`", [*cli, "sarif"]),
        # The same process with next to nothing to write: what Django and Posture cost alone.
        export_in_a_child(var, "`manage.py findings --format csv --host host-00001` (one host)", [*cli, "csv", "--host", "host-00001"]),
    ]


def section(built: Any, load_s: float, m: dict[str, Any], exported: list[dict[str, Any]], total: int) -> str:
    rows = "\n".join(f"| {r['scenario']} | {r['p50_ms']} ms | {r['p95_ms']} ms | {r['queries']} |" for r in m["scenarios"])
    slowest = max(m["scenarios"], key=lambda r: r["p95_ms"])
    verdict = "met" if m["p95_ms"] <= 150 else f"**missed** by {m['p95_ms'] - 150:.0f} ms"
    out = "\n".join(f"| {e['what']} | {e['bytes'] / 2**20:.0f} MB | {e['seconds']:.1f} s | **{e['peak_rss_kib'] / 1024:.0f} MB** |" for e in exported)
    worst = max(e["peak_rss_kib"] for e in exported) / 1024
    alone = exported[-1]["peak_rss_kib"] / 1024
    return f"""## The findings explorer at 10,000 hosts

Database: {built.hosts:,} hosts, {built.findings:,} findings ({m["hosts"]:,} hosts here; `tests/bench_data.py`, loaded
in {load_s:.0f} s). {len(m["scenarios"])} scenarios a person would open, each requested {m["requests"] // len(m["scenarios"])} times after one
warm-up, in-process (Django test client); queries of one request.
Over all {m["requests"]} requests: p50 {m["p50_ms"]} ms, **p95 {m["p95_ms"]} ms** (target p95 ≤ 150 ms: {verdict});
the slowest scenario is "{slowest["scenario"]}" at p95 {slowest["p95_ms"]} ms.

| scenario | p50 | p95 | queries |
|---|---|---|---|
{rows}

Exports of all {total:,} findings, each in a process of its own (peak RSS of that process, Django
and all; target ≤ 200 MB for 300,000 findings — worst here {worst:.0f} MB, {"met" if worst <= 200 else "**missed**"}):

| export | output | time | peak RSS |
|---|---|---|---|
{out}

They stream: rows are read with `.iterator()` in chunks (a server-side cursor) and
written as they come, so memory does not grow with the number of findings: the whole
fleet costs {worst - alone:.0f} MB more than one host's {exported[-1]["lines"] - 1} findings ({alone:.0f} MB).
"""


def run(repeat: int = 20) -> str:
    """The markdown section for docs/benchmarks.md (on make bench's database, emptied before)."""
    from posture.models import Finding

    started = time.perf_counter()
    built = build_fleet()
    load_s = time.perf_counter() - started
    measured = measure(repeat)
    with tempfile.TemporaryDirectory(prefix="posture-bench-explorer-") as var:
        exported = exports(Path(var))
    return section(built, load_s, measured, exported, Finding.objects.count())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", action="store_true", help="build the 10,000-host fleet first (the database must be migrated and empty)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--export", metavar="URL", help="stream this export through the test client and print its size as JSON (used by run())")
    args = parser.parse_args()
    if args.export:
        print(json.dumps(export_in_this_process(args.export)))
        return
    if args.build:
        print(build_fleet())
    if not RiskException.objects.exists():
        raise SystemExit("no fleet here: run with --build on an empty, migrated database")
    print(json.dumps(measure(args.repeat), indent=2))


if __name__ == "__main__":
    main()
