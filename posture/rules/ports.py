"""Published ports: who can reach a container from outside the host."""

from __future__ import annotations

from collections.abc import Iterator

from posture.collector.snapshot import Container

from . import context
from .base import Hit, RuleContext, Severity, SubjectType, rule
from .bindings import EffectiveBinding, effective, published
from .remediation import advice, loopback_spec, publish_on_loopback, where

# Services that must never face the network unauthenticated, keyed by the port the
# service listens on *inside* the container (the host port is whatever was chosen).
SENSITIVE_PORTS: dict[int, str] = {
    2375: "Docker Engine API (plain)",
    2376: "Docker Engine API (TLS)",
    2379: "etcd",
    3306: "MySQL/MariaDB",
    5432: "PostgreSQL",
    5672: "RabbitMQ (AMQP)",
    15672: "RabbitMQ management",
    5984: "CouchDB",
    6379: "Redis",
    6443: "Kubernetes API",
    7000: "Cassandra inter-node",
    8086: "InfluxDB",
    8500: "Consul",
    9042: "Cassandra CQL",
    9090: "Prometheus",
    9092: "Kafka",
    9200: "Elasticsearch/OpenSearch",
    9300: "Elasticsearch transport",
    10250: "kubelet",
    11211: "Memcached",
    1433: "Microsoft SQL Server",
    1521: "Oracle Database",
    27017: "MongoDB",
    28015: "RethinkDB",
    4222: "NATS",
    1883: "MQTT",
    8983: "Solr",
    5601: "Kibana",
    2181: "ZooKeeper",
    6380: "Redis (TLS)",
}


def _evidence(container: Container, eff: EffectiveBinding) -> dict[str, object]:
    binding = eff.configured
    return {
        "HostConfig.PortBindings": {
            f"{binding.container_port}/{binding.protocol}": [
                {"HostIp": binding.host_ip, "HostPort": "" if binding.host_port is None else str(binding.host_port)}
            ]
        },
        "binding": binding.spec,
        "interfaces": "every interface" if eff.all_interfaces else ", ".join(eff.addresses) or "none (not published)",
        "address_family": eff.family,
    } | eff.evidence()


@rule(
    id="port-all-interfaces",
    cis="5.14",
    title="Published port bound to every host interface",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""A port published without a host address listens on every interface, IPv4 and IPv6.
    Docker inserts its own forwarding rules ahead of the host firewall (ufw, firewalld), so the
    port is reachable from every network the host is on, whatever the firewall says.""",
    beyond_cis="""Also flags [::] and empty bindings (IPv6), stopped containers (they can start at any
    time) and -P; docker-bench-security only reads 'docker port' of running containers for 0.0.0.0.
    Reads the address the engine really binds: the bindings in force for running containers, and a
    network's default binding address (the daemon's --ip on the default bridge) for the others, so a
    port that ends on loopback is not reported. Critical when the container behind the port runs
    privileged, holds SYS_ADMIN or mounts the engine socket.""",
)
def port_all_interfaces(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    severity, raised, sentence = context.apply(port_all_interfaces.severity, context.for_published_port(container))
    for eff in effective(container, ctx):
        if eff.all_interfaces:
            binding = eff.configured
            yield Hit(
                key=f"{binding.container_port}/{binding.protocol}:{binding.host_ip or '*'}",
                evidence=_evidence(container, eff) | raised,
                remediation=context.lead(
                    sentence,
                    publish_on_loopback(
                        container, binding, f"Port {binding.container_port}/{binding.protocol} is published on {eff.family} on every interface."
                    ),
                ),
                severity=severity if raised else None,
                exposed=True,
            )


@rule(
    id="port-sensitive-service-exposed",
    title="Database, cache, broker or admin port published on every interface",
    severity=Severity.CRITICAL,
    subject=SubjectType.CONTAINER,
    rationale="""Datastores, brokers and admin consoles are routinely run without authentication or
    with default credentials. Published on every interface they are one scan away from a breach;
    these are the ports attackers sweep for first.""",
    beyond_cis="""CIS 5.14 treats every port alike; this rule singles out the ones known by their
    container port to carry data or control.""",
)
def port_sensitive_service(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    for eff in effective(container, ctx):
        binding = eff.configured
        service = SENSITIVE_PORTS.get(binding.container_port)
        if service and eff.all_interfaces:
            yield Hit(
                key=f"{binding.container_port}/{binding.protocol}",
                evidence=_evidence(container, eff) | {"service": service},
                remediation=publish_on_loopback(
                    container,
                    binding,
                    f"{service} (container port {binding.container_port}) is reachable from any network the host is on.",
                )
                + "\nIf other containers need it, put them on a shared user-defined network and publish nothing at all.",
                exposed=True,
            )


@rule(
    id="port-privileged-host-port",
    cis="5.8",
    title="Container mapped to a privileged host port (below 1024)",
    severity=Severity.LOW,
    subject=SubjectType.CONTAINER,
    rationale="""Ports below 1024 are reserved for system services; a container holding one can
    impersonate a host service (SSH, DNS, HTTP) and usually means it was granted more than it needs.""",
)
def port_privileged(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    for eff in effective(container, ctx):
        binding = eff.configured
        if binding in container.port_bindings and binding.host_port is not None and 0 < binding.host_port < 1024:
            high = binding.host_port + 8000 if binding.host_port < 1000 else binding.host_port + 10000
            ip = binding.host_ip or "127.0.0.1"
            safe = f"{ip}:{high}:{binding.container_port}"
            yield Hit(
                key=f"{binding.host_port}/{binding.protocol}",
                evidence=_evidence(container, eff),
                remediation=advice(
                    f"Map {where(container)} to an unprivileged host port and let a reverse proxy own port {binding.host_port}.",
                    run=f"replace -p {binding.spec} with -p {safe}",
                    compose=f'under ports:, replace "{binding.spec}" with "{safe}"',
                ),
                exposed=eff.all_interfaces,
            )


@rule(
    id="port-published",
    cis="5.9",
    title="Container publishes ports",
    severity=Severity.INFO,
    subject=SubjectType.CONTAINER,
    rationale="""Every published port is a way in. This inventory item lets the team confirm that
    each one is needed.""",
)
def port_published(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    bindings = published(container)
    if bindings:
        specs = [b.spec for b in bindings]
        yield Hit(
            evidence={
                "published": specs,
                "PublishAllPorts": container.publish_all_ports,
                "effective": {e.configured.spec: ", ".join(e.addresses) or "not published" for e in effective(container, ctx)},
            },
            remediation=advice(
                f"Confirm that {where(container)} needs each of {', '.join(specs)}; drop the -p flags "
                "(compose: ports: entries) that no client outside the host uses.",
                run=" ".join(f"-p {loopback_spec(b)}" for b in bindings) + "  (loopback only, where still needed)",
                compose="ports: [" + ", ".join(f'"{loopback_spec(b)}"' for b in bindings) + "]",
            ),
        )


@rule(
    id="port-publish-all",
    title="All exposed ports published (-P)",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""-P publishes every port the image declares, on every interface, on random host
    ports: the exposure changes whenever the image does, and nobody chose it.""",
    beyond_cis="CIS has no item for -P; docker-bench-security does not check it.",
)
def port_publish_all(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    if container.publish_all_ports:
        exposed = list(container.exposed_ports)
        explicit = " ".join(f"-p 127.0.0.1::{p.split('/')[0]}" for p in exposed) or "-p 127.0.0.1:HOSTPORT:PORT"
        yield Hit(
            evidence={"HostConfig.PublishAllPorts": True, "Config.ExposedPorts": exposed},
            remediation=advice(
                f"Stop publishing everything from {where(container)}; publish the ports you need, on loopback.",
                run=f"replace -P with {explicit}",
                compose="replace publish_all: true with explicit ports: entries bound to 127.0.0.1",
            ),
            exposed=True,
        )
