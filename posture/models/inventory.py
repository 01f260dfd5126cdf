"""Each host's current containers, published ports and networks, as rows of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

from posture.collector import HostSnapshot

if TYPE_CHECKING:
    from .hosts import DockerHost


class ContainerManager(models.Manager):
    def replace_for(self, host: DockerHost, snap: HostSnapshot) -> None:
        """Current state only: the rows mirror the latest snapshot (history is in findings
        and stored snapshots)."""
        self.filter(host=host).delete()
        NetworkRecord.objects.filter(host=host).delete()
        containers = self.bulk_create(
            ContainerRecord(
                host=host,
                container_id=c.id,
                subject_key=c.subject_key,
                name=c.name,
                image=c.image,
                state=c.state,
                running=c.running,
                network_mode=c.network_mode,
                networks=[a.network for a in c.attachments],
                cap_add=list(c.cap_add),
                privileged=c.privileged,
                compose_project=c.compose_project,
                compose_service=c.compose_service,
            )
            for c in snap.containers
        )
        ports = [
            PublishedPort(
                container=record,
                host=host,
                host_ip=b.host_ip,
                host_port=b.host_port,
                container_port=b.container_port,
                protocol=b.protocol,
                all_interfaces=b.all_interfaces,
            )
            for record, c in zip(containers, snap.containers, strict=True)
            for b in c.port_bindings
        ]
        PublishedPort.objects.bulk_create(ports)
        NetworkRecord.objects.bulk_create(
            NetworkRecord(
                host=host,
                network_id=n.id,
                name=n.name,
                driver=n.driver,
                scope=n.scope,
                internal=n.internal,
                enable_ipv6=n.enable_ipv6,
                icc=n.icc_enabled,
                subnets=list(n.subnets),
                container_count=len(n.containers),
            )
            for n in snap.networks
        )


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
