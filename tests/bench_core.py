"""The collector and the rules alone: the rule catalog over many containers, reconciling
one big poll, and polling a real Docker engine cold and incrementally. A section of
``make bench`` (``tests/bench.py``); nothing here asserts a time."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from django.utils import timezone

from posture.collector.parse import build_snapshot
from posture.collector.snapshot import Connection, HostSnapshot
from posture.models import DockerHost, PollRun
from posture.rules import Evaluation, evaluate

from .engines import TestEngine
from .observe import snapshot_of

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "engine" / "mixed-exposure.json"


def recorded_snapshot(copies: int = 1) -> HostSnapshot:
    """The recorded mixed-exposure engine, its containers repeated ``copies`` times."""
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


def bench_poll(containers: int = 50) -> dict[str, Any]:
    engine = TestEngine(name="bench", index=8).start()
    try:
        for i in range(containers):
            engine.container(f"bench-{i}", ports={"80/tcp": 20000 + i} if i % 3 == 0 else None, cap_add=["NET_RAW"] if i % 5 == 0 else None)
        started = time.perf_counter()
        first = snapshot_of(engine.url)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        again = snapshot_of(engine.url, previous=first)
        warm = time.perf_counter() - started
    finally:
        engine.stop()
    return {
        "containers": len(first.containers),
        "cold_s": round(cold, 3),
        "cold_api_calls": first.api_calls,
        "incremental_s": round(warm, 3),
        "incremental_api_calls": again.api_calls,
    }


def run() -> str:
    rules, reconcile, poll = bench_rules(), bench_reconcile(), bench_poll()
    return f"""## Collector, rules and reconciliation

| what | measured | result |
|---|---|---|
| poll of a real engine (Docker, started for the run) | {poll["containers"]} containers | cold {poll["cold_s"]} s / {poll["cold_api_calls"]} API calls; incremental {poll["incremental_s"]} s / {poll["incremental_api_calls"]} API calls |
| rule catalog | {rules["containers"]} containers → {rules["findings"]} findings | {rules["median_s"]} s (median of 5) |
| reconcile one poll (`apply_snapshot`) | {reconcile["containers"]} containers, {reconcile["findings"]} findings | first {reconcile["first_s"]} s, unchanged {reconcile["unchanged_s"]} s |

An unchanged engine costs one list call per kind plus inspects of what changed.
"""
