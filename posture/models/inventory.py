"""Each host's current containers, published ports and networks, as rows of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

from posture.collector import HostSnapshot
from posture.collector.snapshot import Container, Network

if TYPE_CHECKING:
    from .hosts import DockerHost


def _container_fields(c: Container) -> dict[str, Any]:
    return {
        "container_id": c.id,
        "subject_key": c.subject_key,
        "name": c.name,
        "image": c.image,
        "state": c.state,
        "running": c.running,
        "network_mode": c.network_mode,
        "networks": [a.network for a in c.attachments],
        "cap_add": list(c.cap_add),
        "privileged": c.privileged,
        "compose_project": c.compose_project,
        "compose_service": c.compose_service,
    }


def _port_fields(c: Container) -> list[tuple[Any, ...]]:
    return [(b.host_ip, b.host_port, b.container_port, b.protocol, b.all_interfaces) for b in c.port_bindings]


def _network_fields(n: Network) -> dict[str, Any]:
    return {
        "network_id": n.id,
        "name": n.name,
        "driver": n.driver,
        "scope": n.scope,
        "internal": n.internal,
        "enable_ipv6": n.enable_ipv6,
        "icc": n.icc_enabled,
        "subnets": list(n.subnets),
        "container_count": len(n.containers),
    }


CONTAINER_FIELDS = [
    "container_id",
    "subject_key",
    "name",
    "image",
    "state",
    "running",
    "network_mode",
    "networks",
    "cap_add",
    "privileged",
    "compose_project",
    "compose_service",
]
NETWORK_FIELDS = ["network_id", "name", "driver", "scope", "internal", "enable_ipv6", "icc", "subnets", "container_count"]


class ContainerManager(models.Manager):
    def sync_for(self, host: DockerHost, snap: HostSnapshot) -> None:
        """Make the rows mirror ``snap`` by writing only the difference: containers and
        networks that went away are deleted, new ones inserted, changed ones updated
        (a container's ports rewritten when they changed). Called when the digest changed."""
        current = {r.container_id: r for r in self.filter(host=host).prefetch_related("ports")}
        wanted = {c.id: c for c in snap.containers}
        self.filter(pk__in=[r.pk for cid, r in current.items() if cid not in wanted]).delete()
        changed: list[ContainerRecord] = []
        ports: list[PublishedPort] = []
        for cid, c in wanted.items():
            record = current.get(cid)
            if record is None:
                continue
            fields = _container_fields(c)
            if any(getattr(record, k) != v for k, v in fields.items()):
                for k, v in fields.items():
                    setattr(record, k, v)
                changed.append(record)
            held = sorted((p.host_ip, p.host_port, p.container_port, p.protocol, p.all_interfaces) for p in record.ports.all())
            if sorted(_port_fields(c)) != held:
                PublishedPort.objects.filter(container=record).delete()
                ports += [PublishedPort(container=record, host=host, **_port_kwargs(p)) for p in _port_fields(c)]
        self.bulk_update(changed, CONTAINER_FIELDS, batch_size=500)
        new = [c for cid, c in wanted.items() if cid not in current]
        created = self.bulk_create(ContainerRecord(host=host, **_container_fields(c)) for c in new)
        ports += [PublishedPort(container=record, host=host, **_port_kwargs(p)) for record, c in zip(created, new, strict=True) for p in _port_fields(c)]
        PublishedPort.objects.bulk_create(ports)
        networks = {r.network_id: r for r in NetworkRecord.objects.filter(host=host)}
        wanted_nets = {n.id: n for n in snap.networks}
        NetworkRecord.objects.filter(pk__in=[r.pk for nid, r in networks.items() if nid not in wanted_nets]).delete()
        NetworkRecord.objects.bulk_create(NetworkRecord(host=host, **_network_fields(n)) for nid, n in wanted_nets.items() if nid not in networks)
        stale = []
        for nid, n in wanted_nets.items():
            record, fields = networks.get(nid), _network_fields(n)
            if record is not None and any(getattr(record, k) != v for k, v in fields.items()):
                for k, v in fields.items():
                    setattr(record, k, v)
                stale.append(record)
        NetworkRecord.objects.bulk_update(stale, NETWORK_FIELDS, batch_size=500)


def _port_kwargs(port: tuple[Any, ...]) -> dict[str, Any]:
    host_ip, host_port, container_port, protocol, all_interfaces = port
    return {"host_ip": host_ip, "host_port": host_port, "container_port": container_port, "protocol": protocol, "all_interfaces": all_interfaces}


class ContainerRecord(models.Model):
    host = models.ForeignKey("DockerHost", on_delete=models.CASCADE, related_name="containers")
    container_id = models.CharField(max_length=64)
    subject_key = models.CharField(max_length=300)
    name = models.CharField(max_length=300)
    image = models.CharField(max_length=300, blank=True)
    state = models.CharField(max_length=20, blank=True)
    running = models.BooleanField(default=False)
    network_mode = models.CharField(max_length=200, blank=True)
    networks = models.JSONField(default=list)
    cap_add = models.JSONField(default=list)
    privileged = models.BooleanField(default=False)
    compose_project = models.CharField(max_length=200, blank=True)
    compose_service = models.CharField(max_length=200, blank=True)

    objects = ContainerManager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["host", "name"], name="container_host")]  # host page

    def __str__(self) -> str:
        return self.name


class PublishedPort(models.Model):
    container = models.ForeignKey(ContainerRecord, on_delete=models.CASCADE, related_name="ports")
    host = models.ForeignKey("DockerHost", on_delete=models.CASCADE, related_name="published_ports")
    host_ip = models.CharField(max_length=64, blank=True)
    host_port = models.PositiveIntegerField(null=True, blank=True)
    container_port = models.PositiveIntegerField()
    protocol = models.CharField(max_length=8, default="tcp")
    all_interfaces = models.BooleanField(default=False)

    class Meta:
        ordering = ["container_port"]

    def __str__(self) -> str:
        ip = self.host_ip or "*"
        return f"{ip}:{self.host_port or '?'}→{self.container_port}/{self.protocol}"


class NetworkRecord(models.Model):
    host = models.ForeignKey("DockerHost", on_delete=models.CASCADE, related_name="networks")
    network_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    driver = models.CharField(max_length=50, blank=True)
    scope = models.CharField(max_length=20, blank=True)
    internal = models.BooleanField(default=False)
    enable_ipv6 = models.BooleanField(default=False)
    icc = models.BooleanField(default=True)
    subnets = models.JSONField(default=list)
    container_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
