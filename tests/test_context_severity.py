"""Severity that follows context: one setting raises what another one exposes, and says why."""

from __future__ import annotations

from posture.collector.snapshot import Mount

from .engines import IMAGE
from .observe import conclusions, hits
from .snapshots import container, found, port, snapshot


def test_net_admin_on_the_host_network_is_critical_and_says_why():
    snap = snapshot(container("router", network_mode="host", cap_add=("NET_ADMIN",)), container("vpn", cap_add=("NET_ADMIN",)))
    caps = found(snap, "capabilities-added")
    assert caps["vpn"].severity == "high" and "severity_raised" not in caps["vpn"].evidence
    raised = caps["router"]
    assert raised.severity == "critical"
    assert raised.evidence["severity_raised"]["from"] == "high" and raised.evidence["severity_raised"]["to"] == "critical"
    assert "host firewall" in raised.evidence["severity_raised"]["because"][0]
    assert raised.remediation.startswith("Severity raised from high to critical because NET_ADMIN on the host network")
    # The host-network finding carries the same reason.
    assert found(snap, "host-network")["router"].severity == "critical"


def test_net_raw_joined_to_a_host_network_container_is_critical():
    snap = snapshot(container("edge", network_mode="host"), container("sniffer", network_mode="container:edge", cap_add=("NET_RAW",)))
    spec = found(snap, "capabilities-added")["sniffer"]
    assert spec.severity == "critical"
    assert "through 'edge'" in spec.evidence["severity_raised"]["because"][0]
    assert found(snap, "host-network")["edge"].severity == "high"  # edge itself holds nothing extra


def test_sys_ptrace_with_the_host_pid_namespace_is_critical_both_ways():
    snap = snapshot(container("debugger", pid_mode="host", cap_add=("SYS_PTRACE",)), container("top", pid_mode="host"))
    assert found(snap, "capabilities-added")["debugger"].severity == "critical"
    pid = found(snap, "host-pid")
    assert pid["debugger"].severity == "critical" and "attach to any host process" in pid["debugger"].remediation
    assert pid["top"].severity == "high" and "severity_raised" not in pid["top"].evidence


def test_sys_ptrace_sharing_another_containers_pid_namespace_states_the_reason_without_raising():
    snap = snapshot(container("app"), container("tracer", pid_mode="container:app", cap_add=("SYS_PTRACE",)))
    spec = found(snap, "capabilities-added")["tracer"]
    assert spec.severity == "high" and "severity_raised" not in spec.evidence


def test_a_published_port_on_a_privileged_container_is_critical():
    snap = snapshot(
        container("priv", privileged=True, port_bindings=(port(80, 8080),), running=False),
        container("plain", port_bindings=(port(80, 8081),), running=False),
    )
    every = found(snap, "port-all-interfaces")
    assert every["plain#80/tcp:*"].severity == "medium"
    assert every["priv#80/tcp:*"].severity == "critical"
    assert "runs privileged" in every["priv#80/tcp:*"].remediation.splitlines()[0]


def test_a_published_port_on_a_container_holding_the_engine_socket_is_critical():
    sock = Mount(type="bind", source="/var/run/docker.sock", destination="/var/run/docker.sock")
    snap = snapshot(container("traefik", mounts=(sock,), port_bindings=(port(80, 80),), running=False))
    spec = found(snap, "port-all-interfaces")["traefik#80/tcp:*"]
    assert spec.severity == "critical" and "engine socket /var/run/docker.sock" in spec.evidence["severity_raised"]["because"][0]


def test_a_loopback_port_is_not_raised_because_it_is_not_reported(engine):
    engine.container("priv-lo", start=False, privileged=True, ports={"80/tcp": ("127.0.0.1", 18490)})
    engine.container("priv-any", start=False, privileged=True, ports={"80/tcp": 18491})
    engine.container("router", start=False, network_mode="host", cap_add=["NET_ADMIN"])
    specs = conclusions(engine.url)
    every = hits(specs, "port-all-interfaces")
    assert set(every) == {"priv-any#80/tcp:*"} and every["priv-any#80/tcp:*"].severity == "critical"
    assert hits(specs, "capabilities-added")["router"].severity == "critical"
    assert engine.client.containers.get("router").image.tags == [IMAGE]
