"""Added capabilities graded by the worst one, raised by the namespaces they act in, and
privileged mode, on hand-built snapshots."""

from __future__ import annotations

import pytest

from tests.builders import compose, conclude, container, hits, only, snapshot, subjects


@pytest.mark.rule("capabilities-added")
@pytest.mark.parametrize(
    ("cap_add", "severity"),
    [
        (["NET_ADMIN"], "high"),
        (["NET_RAW"], "medium"),
        (["ALL"], "critical"),
        (["CAP_SYS_ADMIN"], "critical"),  # the CAP_ prefix is optional to the engine
        (["net_admin"], "high"),  # and so is upper case
        (["NET_RAW", "SYS_MODULE"], "critical"),  # the worst one grades the finding
        (["NET_BIND_SERVICE"], "low"),
        (["NET_BIND_SERVICE", "CHOWN"], "medium"),  # an unlisted cap is never graded below medium
        (["CHOWN"], "medium"),
    ],
)
def test_added_capabilities_are_graded_by_the_most_dangerous(cap_add, severity):
    snap = snapshot([container("granted", cap_add=tuple(cap_add)), container("dropped", cap_drop=("ALL",)), container("default")])
    found = hits(conclude(snap), "capabilities-added")
    assert set(found) == {"granted"}
    assert found["granted"].severity == severity and found["granted"].cis == "5.4"


def test_evidence_explains_each_dangerous_capability_and_remediation_names_it():
    snap = snapshot([container("router", running=False, cap_add=("NET_ADMIN", "CAP_NET_RAW", "CHOWN"), cap_drop=("MKNOD",))])
    spec = only(conclude(snap), "capabilities-added")
    assert spec.running is False
    assert spec.evidence["HostConfig.CapAdd"] == ["NET_ADMIN", "CAP_NET_RAW", "CHOWN"]
    assert spec.evidence["HostConfig.CapDrop"] == ["MKNOD"]
    assert set(spec.evidence["why"]) == {"NET_ADMIN", "NET_RAW"} and "firewall" in spec.evidence["why"]["NET_ADMIN"]
    assert "Remove the added capabilities from container 'router'" in spec.remediation
    assert "docker run: remove --cap-add CHOWN --cap-add NET_ADMIN --cap-add NET_RAW" in spec.remediation
    assert "compose: delete cap_add: [CHOWN, NET_ADMIN, NET_RAW]; prefer cap_drop: [ALL]" in spec.remediation


@pytest.mark.rule("privileged")
def test_privileged_mode_is_critical_even_when_stopped():
    snap = snapshot([container("priv", running=False, privileged=True), container("plain", running=False)])
    found = hits(conclude(snap), "privileged")
    assert set(found) == {"priv"}
    spec = found["priv"]
    assert (spec.severity, spec.cis, spec.running) == ("critical", "5.5", False)
    assert spec.evidence == {"HostConfig.Privileged": True}
    assert "Run container 'priv' unprivileged" in spec.remediation and "remove --privileged" in spec.remediation


def test_privileged_compose_service_is_named_by_its_service():
    snap = snapshot([container("ops-agent-1", privileged=True, labels=compose("ops", "agent"))])
    assert subjects(conclude(snap), "privileged") == {"ops-agent-1"}
    assert "Run service 'agent' of compose project 'ops' unprivileged" in only(conclude(snap), "privileged").remediation


# --- severity that follows context: one setting raises what another one exposes --------------


@pytest.mark.rule("capabilities-added", "host-network")
def test_net_admin_on_the_host_network_is_critical_and_says_why():
    snap = snapshot([container("router", network_mode="host", cap_add=("NET_ADMIN",)), container("vpn", cap_add=("NET_ADMIN",)), container("plain")])
    specs = conclude(snap)
    caps = hits(specs, "capabilities-added")
    assert set(caps) == {"router", "vpn"}
    assert caps["vpn"].severity == "high" and "severity_raised" not in caps["vpn"].evidence
    raised = caps["router"]
    assert raised.severity == "critical"
    assert raised.evidence["severity_raised"]["from"] == "high" and raised.evidence["severity_raised"]["to"] == "critical"
    assert "host firewall" in raised.evidence["severity_raised"]["because"][0]
    assert raised.remediation.startswith("Severity raised from high to critical because NET_ADMIN on the host network")
    # The host-network finding carries the same reason.
    assert only(specs, "host-network").severity == "critical"


@pytest.mark.rule("capabilities-added")
def test_net_raw_joined_to_a_host_network_container_is_critical():
    snap = snapshot([container("edge", network_mode="host"), container("sniffer", network_mode="container:edge", cap_add=("NET_RAW",))])
    specs = conclude(snap)
    spec = only(specs, "capabilities-added")
    assert spec.subject_name == "sniffer" and spec.severity == "critical"
    assert "through 'edge'" in spec.evidence["severity_raised"]["because"][0]
    assert hits(specs, "host-network")["edge"].severity == "high"  # edge itself holds nothing extra


@pytest.mark.rule("capabilities-added", "host-pid")
def test_sys_ptrace_with_the_host_pid_namespace_is_critical_both_ways():
    snap = snapshot([container("debugger", pid_mode="host", cap_add=("SYS_PTRACE",)), container("top", pid_mode="host"), container("plain")])
    specs = conclude(snap)
    assert subjects(specs, "capabilities-added") == {"debugger"}
    assert hits(specs, "capabilities-added")["debugger"].severity == "critical"
    pid = hits(specs, "host-pid")
    assert set(pid) == {"debugger", "top"}
    assert pid["debugger"].severity == "critical" and "attach to any host process" in pid["debugger"].remediation
    assert pid["top"].severity == "high" and "severity_raised" not in pid["top"].evidence


@pytest.mark.rule("capabilities-added")
def test_sys_ptrace_sharing_another_containers_pid_namespace_states_the_reason_without_raising():
    snap = snapshot([container("app"), container("tracer", pid_mode="container:app", cap_add=("SYS_PTRACE",))])
    spec = only(conclude(snap), "capabilities-added")
    assert spec.subject_name == "tracer" and spec.severity == "high" and "severity_raised" not in spec.evidence
