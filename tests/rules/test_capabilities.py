"""Added capabilities graded by the worst one, and privileged mode, on hand-built snapshots."""

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
