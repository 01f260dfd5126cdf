"""Engine sockets, sensitive host paths and host devices, on hand-built snapshots."""

from __future__ import annotations

import pytest

from tests.builders import bind, conclude, container, device, hits, only, snapshot, volume


@pytest.mark.rule("docker-socket-mounted")
@pytest.mark.parametrize(
    "source",
    [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/user/1000/docker.sock",  # rootless
        "/run/containerd/containerd.sock",
        "/var/run/crio/crio.sock",
        "/run/podman/podman.sock",
        "/run/user/1000/podman/podman.sock",
        "/srv/engines/blue/docker.sock",  # an engine run with --host elsewhere
        "/opt/k8s/dockershim.sock",
    ],
)
def test_engine_sockets_are_critical_wherever_they_live(source):
    snap = snapshot(
        [
            container("sock", running=False, mounts=(bind(source, "/var/run/docker.sock"),)),
            container("data", mounts=(bind("/srv/posture-test-data", "/data"),)),
        ]
    )
    found = hits(conclude(snap), "docker-socket-mounted")
    assert set(found) == {"sock#/var/run/docker.sock"}
    spec = found["sock#/var/run/docker.sock"]
    assert (spec.severity, spec.cis, spec.running) == ("critical", "5.32", False)
    assert spec.evidence == {"Mounts": {"Source": source, "Destination": "/var/run/docker.sock", "RW": True}}


@pytest.mark.rule("docker-socket-mounted")
def test_a_read_only_socket_is_as_dangerous_and_the_remediation_says_why():
    snap = snapshot(
        [
            container("traefik", mounts=(bind("/var/run/docker.sock", "/var/run/docker.sock", read_only=True),)),
            container("named-volume", mounts=(volume("docker.sock", "/sock"),)),  # a volume, not the host's socket
        ]
    )
    found = hits(conclude(snap), "docker-socket-mounted")
    assert set(found) == {"traefik#/var/run/docker.sock"}
    spec = found["traefik#/var/run/docker.sock"]
    assert spec.evidence["Mounts"]["RW"] is False
    assert "Do not give container 'traefik' the engine socket" in spec.remediation
    assert "docker run: remove -v /var/run/docker.sock:/var/run/docker.sock:ro;" in spec.remediation
    assert "socket proxy" in spec.remediation and "':ro' does not help" in spec.remediation


def test_a_socket_mounted_twice_is_two_findings_keyed_by_destination():
    snap = snapshot([container("ci", mounts=(bind("/var/run/docker.sock", "/a.sock"), bind("/run/docker.sock", "/b.sock")))])
    assert set(hits(conclude(snap), "docker-socket-mounted")) == {"ci#/a.sock", "ci#/b.sock"}


@pytest.mark.rule("sensitive-host-path")
def test_sensitive_host_paths_high_when_writable_medium_when_read_only():
    snap = snapshot(
        [
            container("root-rw", running=False, mounts=(bind("/", "/host"),)),
            container("etc-ro", mounts=(bind("/etc/", "/host-etc", read_only=True),)),  # trailing slash
            container("docker-data", mounts=(bind("/var/lib/docker", "/docker"),)),
            container("one-file", mounts=(bind("/etc/nginx", "/etc/nginx", read_only=True),)),
            container("app-data", mounts=(bind("/srv/posture-test-data", "/data"), volume("etc", "/etc"))),
        ]
    )
    found = hits(conclude(snap), "sensitive-host-path")
    assert set(found) == {"root-rw#/host", "etc-ro#/host-etc", "docker-data#/docker"}
    assert {k: s.severity for k, s in found.items()} == {"root-rw#/host": "high", "etc-ro#/host-etc": "medium", "docker-data#/docker": "high"}
    root = found["root-rw#/host"]
    assert root.cis == "5.6" and root.running is False
    assert "Mount only the file container 'root-rw' needs, read-only" in root.remediation
    assert "replace -v /:/host with -v /<the-file>:/host/<the-file>:ro" in root.remediation
    assert "replace -v /etc/:/host-etc with -v /etc/<the-file>:/host-etc/<the-file>:ro" in found["etc-ro#/host-etc"].remediation


@pytest.mark.rule("host-devices")
def test_host_devices_a_tunnel_device_is_high():
    snap = snapshot(
        [
            container("vpn", running=False, devices=(device("/dev/net/tun"),)),
            container("disk", devices=(device("/dev/sdb", "/dev/xvdb", "r"),)),
            container("no-dev"),
        ]
    )
    found = hits(conclude(snap), "host-devices")
    assert set(found) == {"vpn#/dev/net/tun", "disk#/dev/sdb"}
    vpn, disk = found["vpn#/dev/net/tun"], found["disk#/dev/sdb"]
    assert (vpn.severity, vpn.cis, vpn.running) == ("high", "5.18", False)
    assert "unless it is a VPN endpoint you operate on purpose" in vpn.remediation
    assert disk.severity == "medium" and "grant read-only access (:r)" in disk.remediation
    assert disk.evidence == {"HostConfig.Devices": {"PathOnHost": "/dev/sdb", "PathInContainer": "/dev/xvdb", "CgroupPermissions": "r"}}
    assert "docker run: remove --device /dev/sdb:/dev/xvdb" in disk.remediation


def test_one_container_with_everything_gets_one_finding_per_item():
    snap = snapshot([container("kitchen-sink", mounts=(bind("/var/run/docker.sock", "/var/run/docker.sock"), bind("/proc", "/host/proc")))])
    specs = conclude(snap)
    assert only(specs, "docker-socket-mounted").key == "/var/run/docker.sock"
    assert only(specs, "sensitive-host-path").key == "/host/proc"
