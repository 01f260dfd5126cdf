"""One simulated engine: its containers and networks, cached answers, event log and churn.

Answers are serialised once and kept as bytes until something on the host changes: a
poll of an unchanged host costs a dictionary look-up. Every change goes through
``_changed`` (which drops exactly the cached answers it affects) and emits the events a
real engine emits for it, in the order it emits them.
All methods run on the simulator's event loop thread; nothing here locks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .answers import BRIDGE_SUBNET, SimContainer, SimNetwork, container_inspect, container_listed, derive, info, network_inspect
from .catalog import Spec, churned, plan_host
from .recording import Recording

# The engine keeps the last 256 events for ``since``; a simulated host keeps more, so a
# watcher resuming after a long pause over a churning fleet still finds its place.
BUFFERED_EVENTS = 1024
# A subscriber further behind than this is dropped (the engine drops slow listeners too).
SUBSCRIBER_BACKLOG = 10_000
CHURN_ACTIONS = ("stop", "start", "recreate", "republish", "rename", "replace")
CHURN_WEIGHTS = (20, 20, 25, 20, 5, 10)


def _dumps(data: Any) -> bytes:
    # The engine's Go encoder ends every answer with a newline.
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


class SimHost:
    def __init__(self, rec: Recording, *, seed: int, index: int, containers: int, socket: Path, epoch_ns: int) -> None:
        self.rec, self.seed, self.index, self.socket = rec, seed, index, socket
        self.name = f"sim-{index:04d}"
        plan = plan_host(seed, index, containers)
        self.engine_name, self.careless = plan.engine_name, plan.careless
        self.rng = random.Random(f"posture-simulate:{seed}:{index}:ids")
        self.churn_rng = random.Random(f"posture-simulate:{seed}:{index}:churn")
        ident = derive("engine", seed, index).upper()
        self.engine_id = ":".join(ident[i : i + 4] for i in range(0, 48, 4))
        self.events: deque[dict[str, Any]] = deque(maxlen=BUFFERED_EVENTS)
        self.subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.changes = 0
        self._last_event_ns = 0
        self._cache: dict[str, bytes] = {}
        self._pid = 1000 + self.rng.randrange(30000)
        self.networks: dict[str, SimNetwork] = {}
        born = epoch_ns - self.rng.randrange(30, 400) * 86400 * 10**9
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            self._add_network(name, driver, born, subnet=BRIDGE_SUBNET if name == "bridge" else None)
        for i, project in enumerate(plan.projects):
            labels = {"com.docker.compose.network": "default", "com.docker.compose.project": project, "com.docker.compose.version": "2.29.7"}
            # The engine's default pools: 172.18-31.0.0/16, then smaller ones.
            subnet = ipaddress.ip_network(f"172.{18 + i}.0.0/16" if i < 14 else f"10.{100 + i // 256}.{i % 256}.0/24")
            self._add_network(f"{project}_default", "bridge", born + i * 10**9, subnet=subnet, labels=labels)
        self.containers: dict[str, SimContainer] = {}
        for spec in plan.containers:
            created = epoch_ns - self.rng.randrange(3600, 90 * 86400) * 10**9
            c = self._new_container(spec, created)
            if spec.running or self.rng.random() < 0.7:
                self._start(c, created + self.rng.randrange(1, 5) * 10**9)
            if not spec.running and c.running:
                # Ran once and stopped: exited, like most stopped containers.
                finished = min(c.started_ns + self.rng.randrange(60, 86400) * 10**9, epoch_ns - 60 * 10**9)
                c.state, c.finished_ns, c.exit_code, c.pid, c.ip = "exited", finished, 0, 0, ""
        self.changed_ns = epoch_ns
        self._cache.clear()

    # --- lookups ------------------------------------------------------------------

    def _add_network(self, name: str, driver: str, created: int, *, subnet: Any = None, labels: dict[str, str] | None = None) -> SimNetwork:
        net = SimNetwork(id=f"{self.rng.getrandbits(256):064x}", name=name, driver=driver, created_ns=created, subnet=subnet, labels=labels or {})
        self.networks[net.id] = net
        return net

    def network_named(self, name: str) -> SimNetwork:
        return next(n for n in self.networks.values() if n.name == name)

    def find_container(self, ref: str) -> SimContainer | None:
        """By full id, name (with or without its slash) or unique id prefix, as the engine resolves them."""
        if ref in self.containers:
            return self.containers[ref]
        name = ref.lstrip("/")
        for c in self.containers.values():
            if c.name == name:
                return c
        matches = [c for cid, c in self.containers.items() if cid.startswith(ref)] if ref else []
        return matches[0] if len(matches) == 1 else None

    def find_network(self, ref: str) -> SimNetwork | None:
        if ref in self.networks:
            return self.networks[ref]
        for n in self.networks.values():
            if n.name == ref:
                return n
        matches = [n for nid, n in self.networks.items() if nid.startswith(ref)] if ref else []
        return matches[0] if len(matches) == 1 else None

    def _net_of(self, c: SimContainer) -> SimNetwork:
        return self.network_named(c.spec.network)

    # --- answers (cached bytes) ---------------------------------------------------

    def answer_info(self) -> bytes:
        if "info" not in self._cache:
            images = len({c.spec.image for c in self.containers.values()})
            data = info(
                self.rec, name=self.engine_name, ident=self.engine_id, containers=list(self.containers.values()), images=images, changed_ns=self.changed_ns
            )
            self._cache["info"] = _dumps(data)
        return self._cache["info"]

    def answer_containers(self, *, all: bool) -> bytes:  # the API's parameter name
        key = "containers:all" if all else "containers:running"
        if key not in self._cache:
            # The engine lists the newest first.
            chosen = [c for c in reversed(self.containers.values()) if all or c.running]
            self._cache[key] = _dumps([container_listed(self.rec, c, self._net_of(c), self.changed_ns) for c in chosen])
        return self._cache[key]

    def listed(self, *, all: bool) -> list[dict[str, Any]]:
        return json.loads(self.answer_containers(all=all))

    def answer_container(self, c: SimContainer) -> bytes:
        if c.inspect is None:
            c.inspect = _dumps(container_inspect(self.rec, c, self._net_of(c)))
        return c.inspect

    def answer_networks(self) -> bytes:
        if "networks" not in self._cache:
            self._cache["networks"] = _dumps([network_inspect(self.rec, n, [], listed=True) for n in self.networks.values()])
        return self._cache["networks"]

    def answer_network(self, net: SimNetwork) -> bytes:
        key = f"network:{net.id}"
        if key not in self._cache:
            members = [c for c in self.containers.values() if c.running and c.spec.network == net.name]
            self._cache[key] = _dumps(network_inspect(self.rec, net, members))
        return self._cache[key]

    def raw_answers(self) -> dict[str, Any]:
        """The host's answers in the recording's shape (``version``, ``info``, ``networks``,
        ``containers``), for building a snapshot without HTTP (``collector.parse.build_snapshot``)."""
        return {
            "version": self.rec.version,
            "info": json.loads(self.answer_info()),
            "networks": [json.loads(self.answer_network(n)) for n in self.networks.values()],
            "containers": [json.loads(self.answer_container(c)) for c in self.containers.values()],
        }

    # --- events -------------------------------------------------------------------

    def _now(self) -> int:
        # Strictly increasing, so ``since`` and ``until`` cut the log exactly.
        self._last_event_ns = max(time.time_ns(), self._last_event_ns + 1)
        return self._last_event_ns

    def emit(self, kind: str, action: str, actor: str, attributes: dict[str, str]) -> dict[str, Any]:
        ns = self._now()
        # In the engine's field order; API 1.41 still sends the pre-1.22 status/id/from of
        # container events beside the new fields, as recorded.
        event: dict[str, Any] = {"status": action, "id": actor, "from": attributes.get("image", "")} if kind == "container" else {}
        event.update(Type=kind, Action=action, Actor={"ID": actor, "Attributes": attributes}, scope="local", time=ns // 1_000_000_000, timeNano=ns)
        self.events.append(event)
        for queue in list(self.subscribers):
            if queue.qsize() >= SUBSCRIBER_BACKLOG:
                self.subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)
        return event

    def _container_event(self, c: SimContainer, action: str, **extra: str) -> None:
        self.emit("container", action, c.id, {**c.spec.label_map, "image": c.spec.image, "name": c.name, **extra})

    def _network_event(self, c: SimContainer, action: str) -> None:
        net = self._net_of(c)
        self.emit("network", action, net.id, {"container": c.id, "name": net.name, "type": net.driver})

    def _changed(self, *containers: SimContainer, networks: Iterable[str] = ()) -> None:
        """Drop the cached answers a change made stale; everything else keeps its bytes."""
        for c in containers:
            c.inspect = None
        for key in ("info", "containers:all", "containers:running"):
            self._cache.pop(key, None)
        for name in {*networks, *(c.spec.network for c in containers)}:
            self._cache.pop(f"network:{self.network_named(name).id}", None)
        self.changed_ns = time.time_ns()
        self.changes += 1

    # --- what an operator (or compose) does ----------------------------------------

    def _new_container(self, spec: Spec, created: int) -> SimContainer:
        c = SimContainer(id=f"{self.rng.getrandbits(256):064x}", spec=spec, created_ns=created)
        self.containers[c.id] = c
        return c

    def _free_ip(self, net: SimNetwork) -> str:
        taken = {c.ip for c in self.containers.values() if c.running and c.spec.network == net.name}
        for host in net.subnet.hosts():
            ip = str(host)
            if ip != net.gateway and ip not in taken:
                return ip
        raise RuntimeError(f"{net.name} is full")

    def _start(self, c: SimContainer, at: int) -> None:
        net = self._net_of(c)
        c.ip = self._free_ip(net) if net.subnet is not None else ""
        self._pid += self.rng.randrange(1, 40)
        c.state, c.started_ns, c.pid, c.exit_code = "running", at, self._pid, 0

    def create(self, spec: Spec, *, start: bool = True) -> SimContainer:
        c = self._new_container(spec, self._now())
        self._container_event(c, "create")
        if start:
            self.start(c)
        else:
            self._changed(c)
        return c

    def start(self, c: SimContainer) -> None:
        self._start(c, self._now())
        self._network_event(c, "connect")
        self._container_event(c, "start")
        self._changed(c)

    def stop(self, c: SimContainer, *, exit_code: int = 143) -> None:
        self._container_event(c, "kill", signal="15")
        c.state, c.finished_ns, c.exit_code, c.pid = "exited", self._now(), exit_code, 0
        self._container_event(c, "die", exitCode=str(exit_code))
        self._network_event(c, "disconnect")
        c.ip = ""
        self._container_event(c, "stop")
        self._changed(c)

    def remove(self, c: SimContainer) -> None:
        if c.running:
            self.stop(c)
        del self.containers[c.id]
        self._container_event(c, "destroy")
        self._changed(c)

    def rename(self, c: SimContainer, new: str) -> None:
        old = c.name
        c.spec = replace(c.spec, name=new)
        self._container_event(c, "rename", oldName="/" + old)
        self._changed(c)

    def recreate(self, c: SimContainer, spec: Spec | None = None) -> SimContainer:
        """What ``docker compose up`` does to a changed service: stop, set aside, create, start, remove."""
        name, was_running = c.name, c.running
        if c.running:
            self.stop(c, exit_code=0)
        self.rename(c, f"{c.id[:12]}_{name}")
        fresh = self.create(replace(spec or c.spec, name=name), start=was_running or c.spec.running)
        self.remove(c)
        return fresh

    # --- churn ----------------------------------------------------------------------

    def churn(self, count: int) -> list[str]:
        """Make ``count`` changes, drawn from this host's own churn generator; returns what was done."""
        done: list[str] = []
        for _ in range(count):
            action = self.churn_rng.choices(CHURN_ACTIONS, CHURN_WEIGHTS)[0]
            pool = sorted(self.containers.values(), key=lambda c: c.name)
            if not pool:
                break
            stopped = [c for c in pool if not c.running]
            if action == "start" and not stopped:
                action = "stop"
            if action == "start":
                c = self.churn_rng.choice(stopped)
                self.start(c)
            else:
                c = self.churn_rng.choice(pool)
                if action == "stop" and c.running:
                    self.stop(c)
                elif action == "stop":
                    action = "start"
                    self.start(c)
                elif action == "republish":
                    taken = {(p.host_port, p.protocol) for o in pool if o is not c for p in o.spec.ports}
                    c = self.recreate(c, churned(c.spec, self.churn_rng, taken))
                elif action in ("rename", "replace") and "com.docker.compose.project" not in c.spec.label_map:
                    # A standalone container renamed, or removed and run again under a new
                    # name: either way its history starts afresh.
                    names = {o.name for o in pool}
                    name = c.name
                    while name in names:  # the engine refuses a name in use
                        name = f"{c.name.split('.')[0]}.{self.churn_rng.randrange(1000)}"
                    if action == "rename":
                        self.rename(c, name)
                    else:
                        self.remove(c)
                        c = self.create(replace(c.spec, name=name))
                else:
                    # A redeploy: compose re-creates the container from a newer image.
                    action = "recreate"
                    c = self.recreate(c, replace(c.spec, image=_bump(c.spec.image)))
            done.append(f"{action} {c.name}")
        return done


def _bump(image: str) -> str:
    """A new patch release of the same image, as a redeploy pulls."""
    repo, _, tag = image.rpartition(":")
    head, _, last = tag.rpartition(".")
    if not repo or not last.isdigit():
        return image
    return f"{repo}:{head}.{int(last) + 1}" if head else f"{repo}:{int(last) + 1}"
