"""Server time of the findings explorer on a fleet-sized database (``tests/bench_data.py``).

    DATABASE_URL=postgres://…/bench python -m tests.bench_explorer [--build] [--repeat 20]

Each scenario is a URL a person would open (filters, the grouped view, a deep page, an
htmx partial); each is requested ``repeat`` times through Django's test client, in
process, so the time is the server's: view, queries and template, no network. Prints
p50/p95 per scenario and over all requests, the query count of each, and the peak RSS
and time of streaming the whole open set as CSV. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from posture.models import DockerHost, RiskException  # noqa: E402

from .bench_data import build_fleet  # noqa: E402

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
        "export": export_csv(client),
    }


def export_csv(client: Client) -> dict[str, Any]:
    """Stream every open finding as CSV through the page's export and count the bytes."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.get("/findings/export.csv?status=all")
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    return {
        "rows": lines - 1,
        "mb": round(size / 2**20, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_before_mb": round(before / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", action="store_true", help="build the 10,000-host fleet first (the database must be migrated and empty)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if args.build:
        print(build_fleet())
    if not RiskException.objects.exists():
        raise SystemExit("no fleet here: run with --build on an empty, migrated database")
    print(json.dumps(measure(args.repeat), indent=2))


if __name__ == "__main__":
    main()
