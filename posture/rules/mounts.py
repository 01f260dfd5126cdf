"""Host paths, sockets and devices handed to containers."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

from posture.collector.snapshot import Container, Mount

from .base import Hit, RuleContext, Severity, SubjectType, rule
from .remediation import advice, where

ENGINE_SOCKETS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/user/*/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/user/*/podman/podman.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
)
# docker-bench-security's list for 5.6, plus paths that hold engine state or secrets.
SENSITIVE_PATHS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/root", "/var/lib/docker", "/run", "/var/run")


# Engines run with --host elsewhere (rootless, custom data roots) keep these names.
SOCKET_NAMES = frozenset({"docker.sock", "containerd.sock", "podman.sock", "crio.sock", "dockershim.sock"})


def _is_socket(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in SOCKET_NAMES or any(fnmatch.fnmatch(path, pattern) for pattern in ENGINE_SOCKETS)


def engine_socket_mounts(container: Container) -> list[Mount]:
    return [m for m in container.mounts if m.type == "bind" and _is_socket(m.source)]


@rule(
    id="docker-socket-mounted",
    cis="5.32",
    title="Container engine socket mounted into a container",
    severity=Severity.CRITICAL,
    subject=SubjectType.CONTAINER,
    rationale="""Whoever can talk to the engine socket can start a privileged container with the host
    filesystem mounted: the socket is root on the host. Mounting it read-only changes nothing, since
    ':ro' only stops the file being replaced, not API calls being made through it.""",
    beyond_cis="Also containerd, CRI-O and podman sockets, rootless sockets under /run/user, and read-only mounts.",
)
def docker_socket(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    for mount in container.mounts:
        if mount.type == "bind" and _is_socket(mount.source):
            yield Hit(
                key=mount.destination,
                evidence={"Mounts": {"Source": mount.source, "Destination": mount.destination, "RW": not mount.read_only}},
                remediation=advice(
                    f"Do not give {where(container)} the engine socket. If it needs the API (a reverse proxy "
                    "discovering services, a CI runner), put a socket proxy in between that allows only the "
                    "endpoints it reads, and connect it to that over a private network.",
                    run=f"remove -v {mount.source}:{mount.destination}{':ro' if mount.read_only else ''}; "
                    "set DOCKER_HOST=tcp://socket-proxy:2375 to a socket proxy that allows e.g. CONTAINERS=1 only",
                    compose=f'delete "{mount.source}:{mount.destination}" under volumes:, add a socket-proxy service and DOCKER_HOST=tcp://socket-proxy:2375',
                    note="':ro' does not help: a read-only socket still accepts every API call.",
                ),
            )


@rule(
    id="sensitive-host-path",
    cis="5.6",
    title="Sensitive host directory mounted into a container",
    severity=Severity.HIGH,
    subject=SubjectType.CONTAINER,
    rationale="""Host directories such as /, /etc, /proc, /sys or /var/lib/docker let a container read
    secrets and, when writable, change the host's configuration, network setup included.""",
)
def sensitive_path(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    for mount in container.mounts:
        source = mount.source.rstrip("/") or "/"
        if mount.type == "bind" and source in SENSITIVE_PATHS:
            ro = "" if mount.read_only else ":ro"
            yield Hit(
                key=mount.destination,
                evidence={"Mounts": {"Source": mount.source, "Destination": mount.destination, "RW": not mount.read_only}},
                remediation=advice(
                    f"Mount only the file {where(container)} needs, read-only, or use a named volume.",
                    run=f"replace -v {mount.source}:{mount.destination} with -v {source.rstrip('/')}/<the-file>:{mount.destination}/<the-file>{ro or ':ro'}",
                    compose=f'under volumes:, narrow "{mount.source}:{mount.destination}" to the single path needed, with :ro',
                ),
                severity=Severity.HIGH if not mount.read_only else Severity.MEDIUM,
            )


@rule(
    id="host-devices",
    cis="5.18",
    title="Host device exposed to a container",
    severity=Severity.MEDIUM,
    subject=SubjectType.CONTAINER,
    rationale="""A host device gives the container direct kernel access; /dev/net/tun lets it build
    tunnels (a VPN out of the network) and raw network devices bypass the bridge.""",
)
def host_devices(container: Container, ctx: RuleContext) -> Iterator[Hit]:
    for device in container.devices:
        tunnel = device.host_path == "/dev/net/tun"
        yield Hit(
            key=device.host_path,
            evidence={
                "HostConfig.Devices": {"PathOnHost": device.host_path, "PathInContainer": device.container_path, "CgroupPermissions": device.permissions}
            },
            remediation=advice(
                f"Remove the device from {where(container)}"
                + (" unless it is a VPN endpoint you operate on purpose." if tunnel else ", or grant read-only access (:r) if it must stay."),
                run=f"remove --device {device.host_path}:{device.container_path}",
                compose=f'delete "{device.host_path}:{device.container_path}" under devices:',
            ),
            severity=Severity.HIGH if tunnel else None,
        )
