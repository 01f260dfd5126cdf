"""What runs on a simulated host: compose stacks and infrastructure containers, drawn by seed.

Every host draws a *hygiene* between tidy and careless; it decides how often a backing
service is published, on which addresses, and how many risky infrastructure
containers (host network, Docker socket, privileged...) the host runs. So a fleet shows
the spread a real one does: a few clean hosts, a long middle, a few on fire.
Everything is drawn from ``random.Random`` seeded by (fleet seed, host index): the same
seed gives the same fleet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

COMPOSE_VERSION = "2.29.7"


@dataclass(frozen=True)
class Publish:
    container_port: int
    host_port: int
    host_ip: str = ""  # "" = every interface, IPv4 and IPv6 (the engine reports both)
    protocol: str = "tcp"


@dataclass(frozen=True)
class Spec:
    """What an operator asked for; survives re-creation (a new id, the same spec)."""

    name: str
    image: str
    network: str = "bridge"  # "bridge", "host" or a user network's name
    ports: tuple[Publish, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    cap_add: tuple[str, ...] = ()
    privileged: bool = False
    pid_host: bool = False
    docker_sock: bool = False
    command: tuple[str, ...] = ("sleep", "infinity")
    running: bool = True

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def exposures(self) -> frozenset[str]:
        """What this container is meant to show on the dashboard (tests check the rules agree)."""
        found = set()
        if self.network == "host":
            found.add("host-network")
        if self.cap_add:
            found.add("capabilities")
        if self.privileged:
            found.add("privileged")
        if self.pid_host:
            found.add("host-pid")
        if self.docker_sock:
            found.add("docker-socket")
        for p in self.ports:
            found.add("port-loopback" if p.host_ip.startswith("127.") else "port-all-interfaces")
            if p.container_port in SENSITIVE and not p.host_ip.startswith("127."):
                found.add("port-sensitive")
        return frozenset(found)


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    ports: tuple[int, ...] = ()
    front: bool = False  # published as a matter of course (a reverse proxy, a web app)
    replicas: int = 1


# Container ports that hold data or control; the rules call these sensitive too.
SENSITIVE = frozenset({5432, 6379, 3306, 27017, 9200, 5601, 5672, 15672, 9090, 11211})

STACKS: dict[str, tuple[Service, ...]] = {
    "web": (
        Service("proxy", "nginx:1.27.2-alpine", (80, 443), front=True),
        Service("app", "{registry}/{project}/app:{version}", (8000,), replicas=2),
        Service("db", "postgres:16.4", (5432,)),
        Service("cache", "redis:7.4.1-alpine", (6379,)),
    ),
    "queue": (
        Service("api", "{registry}/{project}/api:{version}", (8080,), front=True),
        Service("worker", "{registry}/{project}/worker:{version}", replicas=3),
        Service("broker", "rabbitmq:3.13.7-management", (5672, 15672)),
        Service("db", "mysql:8.4.2", (3306,)),
    ),
    "search": (
        Service("search", "docker.elastic.co/elasticsearch/elasticsearch:8.15.2", (9200,)),
        Service("ui", "docker.elastic.co/kibana/kibana:8.15.2", (5601,), front=True),
    ),
    "metrics": (
        Service("prometheus", "prom/prometheus:v2.54.1", (9090,)),
        Service("grafana", "grafana/grafana:11.2.2", (3000,), front=True),
    ),
    "docs": (
        Service("web", "{registry}/{project}/web:{version}", (3000,), front=True),
        Service("mongo", "mongo:7.0.14", (27017,)),
        Service("memcached", "memcached:1.6.31", (11211,)),
    ),
}
PROJECTS = ("shop", "billing", "auth", "search", "crm", "wiki", "blog", "chat", "mail", "media", "inventory", "payments", "reports", "tickets", "ledger")
REGISTRIES = ("registry.example.internal", "ghcr.io/example", "harbor.corp.example")
REGIONS = ("ams", "fra", "iad", "sfo", "sin", "syd", "lon", "par")
ROLES = ("app", "web", "db", "batch", "edge", "ci", "ops", "data")


def _infra(rng: random.Random, careless: float) -> list[Spec]:
    """The host's own tooling: where host-level exposures come from."""
    found: list[Spec] = []
    if rng.random() < 0.3 + careless:
        found.append(Spec("node-exporter", "prom/node-exporter:v1.8.2", network="host", pid_host=True, command=("/bin/node_exporter", "--path.rootfs=/host")))
    if rng.random() < 0.15 + careless:
        found.append(Spec("cadvisor", "gcr.io/cadvisor/cadvisor:v0.49.1", privileged=True, docker_sock=True, ports=(Publish(8080, 8088, ""),)))
    if rng.random() < 0.25:
        found.append(Spec("traefik", "traefik:v3.1.6", docker_sock=True, ports=(Publish(80, 80, ""), Publish(443, 443, ""))))
    if rng.random() < careless:
        found.append(Spec("portainer", "portainer/portainer-ce:2.21.3", docker_sock=True, ports=(Publish(9443, 9443, "0.0.0.0"),)))
    if rng.random() < 0.2:
        found.append(Spec("watchtower", "containrrr/watchtower:1.7.1", docker_sock=True))
    if rng.random() < 0.1 + careless / 2:
        found.append(Spec("wireguard", "linuxserver/wireguard:1.0.20210914", cap_add=("NET_ADMIN",), ports=(Publish(51820, 51820, "", "udp"),)))
    if rng.random() < careless / 2:
        found.append(Spec("netshoot", "nicolaka/netshoot:v0.13", network="host", cap_add=("NET_ADMIN", "NET_RAW"), running=False))
    return found


def _address(rng: random.Random, careless: float, *, front: bool) -> str | None:
    """Where a service's port is published: ``None`` (not at all), loopback, or every interface."""
    if front:
        return rng.choice(("", "", "0.0.0.0", "::")) if rng.random() < 0.8 else "127.0.0.1"
    if rng.random() > careless:
        return None
    return rng.choice(("", "0.0.0.0", "127.0.0.1", "127.0.0.1", "::"))


@dataclass
class _Ports:
    """Host ports in use on one host: the container port if free, else the next free above 20000."""

    used: set[tuple[int, str]] = field(default_factory=set)
    next_high: int = 20000

    def take(self, port: int, protocol: str = "tcp") -> int:
        if (port, protocol) not in self.used:
            self.used.add((port, protocol))
            return port
        while (self.next_high, protocol) in self.used:
            self.next_high += 1
        self.used.add((self.next_high, protocol))
        return self.next_high


def _stack(rng: random.Random, careless: float, project: str, kind: str, ports: _Ports) -> list[Spec]:
    registry, version = rng.choice(REGISTRIES), f"{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
    found = []
    for service in STACKS[kind]:
        image = service.image.format(registry=registry, project=project, version=version)
        address = _address(rng, careless, front=service.front)
        published = () if address is None else tuple(Publish(p, ports.take(p), address) for p in service.ports)
        # A careless operator adds a capability for a ping or a tcpdump, and forgets it.
        caps = ("NET_RAW",) if rng.random() < careless / 3 else ()
        for n in range(1, service.replicas + 1):
            labels = (
                ("com.docker.compose.config-hash", f"{rng.getrandbits(256):064x}"),
                ("com.docker.compose.container-number", str(n)),
                ("com.docker.compose.depends_on", ""),
                ("com.docker.compose.image", f"sha256:{rng.getrandbits(256):064x}"),
                ("com.docker.compose.oneoff", "False"),
                ("com.docker.compose.project", project),
                ("com.docker.compose.project.config_files", f"/srv/{project}/compose.yaml"),
                ("com.docker.compose.project.working_dir", f"/srv/{project}"),
                ("com.docker.compose.service", service.name),
                ("com.docker.compose.version", COMPOSE_VERSION),
            )
            # Replicas cannot share a host port: only the first publishes.
            found.append(
                Spec(f"{project}-{service.name}-{n}", image, network=f"{project}_default", ports=published if n == 1 else (), labels=labels, cap_add=caps)
            )
    return found


@dataclass(frozen=True)
class HostPlan:
    engine_name: str
    careless: float
    containers: tuple[Spec, ...]
    projects: tuple[str, ...]


def plan_host(seed: int, index: int, containers: int) -> HostPlan:
    """The containers of host ``index`` in fleet ``seed``: exactly ``containers`` of them."""
    rng = random.Random(f"posture-simulate:{seed}:{index}")
    # Most hosts are fairly tidy, some are not: a skewed draw gives the dashboard a tail.
    careless = round(min(0.9, rng.betavariate(1.2, 3.5)), 3)
    specs = _infra(rng, careless)
    ports = _Ports({(p.host_port, p.protocol) for s in specs for p in s.ports})
    projects: list[str] = []
    pool = list(PROJECTS)
    rng.shuffle(pool)
    while len(specs) < containers:
        base = pool[len(projects) % len(pool)]
        project = base if len(projects) < len(pool) else f"{base}{len(projects) // len(pool) + 1}"
        projects.append(project)
        specs += _stack(rng, careless, project, rng.choice(sorted(STACKS)), ports)
    specs = specs[:containers]
    # A few containers are stopped or never started, as on any host.
    specs = [replace(s, running=False) if s.running and rng.random() < 0.06 else s for s in specs]
    used = {s.network.removesuffix("_default") for s in specs if s.network.endswith("_default")}
    engine_name = f"{rng.choice(REGIONS)}-{rng.choice(ROLES)}-{index:04d}"
    return HostPlan(engine_name=engine_name, careless=careless, containers=tuple(specs), projects=tuple(p for p in projects if p in used))


def churned(spec: Spec, rng: random.Random, taken: set[tuple[int, str]]) -> Spec:
    """A re-published spec: the operator moved its ports to another address, unpublished
    them, or published a port (on a host port not in ``taken``)."""
    if spec.network == "host":
        return spec  # nothing to publish: the host's ports are the container's
    if spec.ports:
        choice = rng.choice(("", "0.0.0.0", "127.0.0.1", "::", None))
        if choice is None:
            return replace(spec, ports=())
        return replace(spec, ports=tuple(replace(p, host_ip=choice) for p in spec.ports))
    port = _Ports(set(taken)).take(20000 + rng.randrange(20000))
    return replace(spec, ports=(Publish(8080, port, rng.choice(("", "127.0.0.1"))),))
