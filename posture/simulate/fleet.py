"""Running a simulated fleet: N hosts, their sockets, and the churn loop.

``Simulator`` is the asyncio side (``manage.py simulate`` runs it in the foreground);
``simulated_fleet()`` runs one on a background thread for tests and the benchmark::

    with simulated_fleet(hosts=3, containers=5, seed=1) as fleet:
        collect(EngineTarget(url=parse_engine_url(fleet.urls[0])))
        fleet.churn(0, 2)   # two changes on the first host, with their events
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import resource
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from aiohttp import web

from .host import SimHost
from .recording import load
from .server import EngineHandler

log = logging.getLogger(__name__)
# A unix socket path must fit in sockaddr_un.sun_path (108 bytes with its NUL).
MAX_SOCKET_PATH = 107


class SimulatorError(RuntimeError):
    pass


def raise_file_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; refuse clearly if even that is too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and needed > soft:
        raise SimulatorError(f"{needed} file descriptors needed but the hard limit is {soft}: raise it (ulimit -Hn) or simulate fewer hosts")
    return soft


def _clear_stale(path: Path) -> None:
    """Remove a socket a dead simulator left; refuse to take one a live process serves."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise SimulatorError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise SimulatorError(f"{path} is served by another process (is a simulator already running?)")


class Simulator:
    """N simulated engines on unix sockets in ``directory``, churned every ``interval`` seconds.

    ``churn`` is the expected number of containers changed per host per interval: its
    whole part on every host, its fraction as a chance drawn from each host's seeded
    generator (0.1: each host has one change one interval in ten; 2.5: two or three).
    """

    def __init__(self, directory: Path, *, hosts: int, containers: int = 50, seed: int = 0, churn: float = 0.0, interval: float = 10.0) -> None:
        if hosts < 1 or containers < 0 or churn < 0 or interval <= 0:
            raise SimulatorError("hosts must be at least 1; containers, churn and interval not negative (interval above 0)")
        self.directory = Path(directory).resolve()
        self.count, self.containers, self.seed, self.rate, self.interval = hosts, containers, seed, churn, interval
        self.hosts: list[SimHost] = []
        self._runners: list[web.BaseRunner] = []
        self._churn_task: asyncio.Task[None] | None = None
        self._draw = random.Random(f"posture-simulate:{seed}:rate")

    @property
    def urls(self) -> list[str]:
        return [f"unix://{h.socket}" for h in self.hosts]

    def plan(self, epoch_ns: int | None = None) -> list[SimHost]:
        """The hosts this simulator serves, as they start, without serving them: the same
        seed gives the same hosts (``manage.py demo`` builds their history from copies)."""
        rec, epoch = load(), epoch_ns or time.time_ns()
        return [
            SimHost(rec, seed=self.seed, index=index, containers=self.containers, socket=self.directory / f"sim-{index:04d}.sock", epoch_ns=epoch)
            for index in range(1, self.count + 1)
        ]

    async def start(self) -> None:
        longest = self.directory / f"sim-{self.count:04d}.sock"
        if len(str(longest)) > MAX_SOCKET_PATH:
            raise SimulatorError(f"socket paths under {self.directory} are too long for a unix socket: choose a shorter --dir")
        # One listening socket per host, plus room for the clients' connections.
        raise_file_limit(self.count + 1024)
        self.directory.mkdir(parents=True, exist_ok=True)
        rec = load()
        version_body = json.dumps(rec.version, separators=(",", ":")).encode() + b"\n"
        headers = {k: v for k, v in rec.ping.items() if k.lower() in ("api-version", "docker-experimental", "ostype", "server")}
        try:
            for host in self.plan():
                path = host.socket
                _clear_stale(path)
                # handler_cancellation: a client that goes away ends its /events stream.
                runner = web.ServerRunner(
                    web.Server(EngineHandler(host, version_body, headers), handler_cancellation=True, access_log=None), shutdown_timeout=2
                )
                await runner.setup()
                self._runners.append(runner)
                await web.UnixSite(runner, str(path), backlog=256).start()
                self.hosts.append(host)
        except BaseException:
            await self.stop()
            raise
        if self.rate > 0:
            self._churn_task = asyncio.create_task(self._churn_loop())
        log.info("simulating %d hosts of %d containers in %s", self.count, self.containers, self.directory)

    def open_connections(self, index: int) -> int:
        """Client connections host ``index`` (0-based) holds open right now."""
        server = self._runners[index].server
        return len(server.connections) if server else 0

    def changes_for(self, host: SimHost) -> int:
        whole = int(self.rate)
        return whole + (1 if host.churn_rng.random() < self.rate - whole else 0)

    def churn_once(self) -> int:
        """One interval's changes over the whole fleet; returns how many were made."""
        made = 0
        for host in self.hosts:
            n = self.changes_for(host)
            if n:
                host.churn(n)
                made += n
        return made

    async def _churn_loop(self) -> None:
        next_at = time.monotonic() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            # Fixed ticks: a slow round does not push the next one back.
            next_at += self.interval
            made = self.churn_once()
            log.debug("churn: %d changes", made)

    async def stop(self) -> None:
        if self._churn_task is not None:
            self._churn_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._churn_task
            self._churn_task = None
        for host in self.hosts:
            for queue in list(host.subscribers):
                queue.put_nowait(None)  # ends open /events streams
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        for host in self.hosts:
            with contextlib.suppress(FileNotFoundError):
                host.socket.unlink()


class Fleet:
    """A ``Simulator`` on a background thread, driven from synchronous code."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="posture-simulate", daemon=True)

    @property
    def hosts(self) -> list[SimHost]:
        return self.simulator.hosts

    @property
    def urls(self) -> list[str]:
        return self.simulator.urls

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the simulator's loop (host state is touched only there) and return its result."""
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def churn(self, host: int, changes: int = 1) -> list[str]:
        """``changes`` changes on host number ``host`` (0-based); returns what was done."""
        return self.call(self.hosts[host].churn, changes)

    def open_connections(self, host: int) -> int:
        return self.call(self.simulator.open_connections, host)

    def events(self, host: int) -> list[dict[str, Any]]:
        return self.call(lambda: list(self.hosts[host].events))

    def start(self) -> Fleet:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.simulator.start(), self._loop).result(timeout=300)
        except BaseException:
            self._halt()
            raise
        return self

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.simulator.stop(), self._loop).result(timeout=60)
        finally:
            self._halt()

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextlib.contextmanager
def simulated_fleet(
    hosts: int = 3, containers: int = 50, seed: int = 0, *, churn: float = 0.0, interval: float = 10.0, directory: Path | None = None
) -> Iterator[Fleet]:
    """A running fleet for the duration of the ``with`` block; sockets in a temporary directory unless given."""
    with contextlib.ExitStack() as stack:
        where = directory or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="posture-sim-")))
        fleet = Fleet(Simulator(where, hosts=hosts, containers=containers, seed=seed, churn=churn, interval=interval)).start()
        stack.callback(fleet.stop)
        yield fleet
