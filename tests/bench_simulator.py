"""How much the simulated fleet costs per request: ``python -m tests.bench_simulator``, and
a section of ``make bench`` (``run()``).

A measurement for the benchmark, not a test. The simulator runs in a child process
(``Simulator`` on its own event loop); clients in other processes use the docker SDK
over keep-alive connections, as a poll does. Printed: requests a second (client-bound
on a small machine), and the simulator's own CPU per request, read from /proc — the
number that says what a poll costs the simulator.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from posture.collector import parse_engine_url
from posture.collector.engine import collect
from posture.collector.target import EngineTarget
from posture.simulate import Simulator

from .procstat import cpu_seconds


def _serve(directory: str, hosts: int, containers: int, ready: Any) -> None:
    async def main() -> None:
        started = time.perf_counter()
        sim = Simulator(Path(directory), hosts=hosts, containers=containers, seed=1)
        await sim.start()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ready.send({"start_s": round(time.perf_counter() - started, 2), "rss_mb": round(rss), "urls": sim.urls})
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await sim.stop()

    asyncio.run(main())


def _client(urls: list[str], kind: str, seconds: float, out: Any) -> None:
    count, deadline = 0, time.monotonic() + seconds
    if kind == "poll":
        targets = [EngineTarget(url=parse_engine_url(u)) for u in urls[:5]]
        previous = {t: collect(t) for t in targets}  # then every poll is an unchanged one
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t = targets[count % len(targets)]
            previous[t] = collect(t, previous[t])
            count += 1
    else:
        clients = [docker.APIClient(base_url=u, version="1.41") for u in urls]
        call = {"list": lambda c: c.containers(all=True), "info": lambda c: c.info(), "ping": lambda c: c.ping()}[kind]
        while time.monotonic() < deadline:
            call(clients[count % len(clients)])
            count += 1
    out.send(count)


def measure(urls: list[str], pid: int, kind: str, seconds: float = 5.0, clients: int = 2) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe() for _ in range(clients)]
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    procs = [ctx.Process(target=_client, args=(urls[i::clients], kind, seconds, child)) for i, (_, child) in enumerate(pipes)]
    for p in procs:
        p.start()
    count = sum(parent.recv() for parent, _ in pipes)
    if not count:
        raise RuntimeError(f"no {kind} request completed in {seconds}s")
    for p in procs:
        p.join()
    elapsed, used = time.perf_counter() - started, cpu_seconds(pid) - cpu
    return {"kind": kind, "count": count, "per_s": round(count / elapsed), "simulator_cpu_us_each": round(used / count * 1e6, 1)}


def measure_fleet(hosts: int, containers: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix="posture-simbench-") as tmp:
        proc = ctx.Process(target=_serve, args=(tmp, hosts, containers, child))
        proc.start()
        try:
            ready = parent.recv()
            urls = ready.pop("urls")
            results: dict[str, Any] = {"hosts": hosts, "containers": containers, **ready}
            for kind in ("ping", "info", "list", "poll"):
                results[kind] = measure(urls[:50], proc.pid, kind)
            return results
        finally:
            proc.terminate()
            proc.join(timeout=30)


def run() -> str:
    """The section of ``make bench`` (``tests/bench.py``)."""
    r = measure_fleet(1000, 50)
    rows = "\n".join(
        f"| {kind} | {r[kind]['count']} in 5 s from 2 clients | {r[kind]['per_s']} | {r[kind]['simulator_cpu_us_each']} µs |"
        for kind in ("ping", "info", "list", "poll")
    )
    return f"""## The simulated fleet

`python -m tests.bench_simulator` (docs/simulator.md): {r["hosts"]} hosts of {r["containers"]} containers
started in {r["start_s"]} s in {r["rss_mb"]} MB; clients in two other processes over keep-alive
connections, as a poll makes them ("poll": a whole unchanged poll by the collector, each call
on a fresh connection as the docker SDK makes them).

| request | measured | per second | simulator CPU each |
|---|---|---|---|
{rows}

Requests a second are bound by the clients on this machine; the simulator's CPU per
request is what a poll costs it.
"""


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    containers = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    print(json.dumps(measure_fleet(hosts, containers), indent=2))


if __name__ == "__main__":
    main()
