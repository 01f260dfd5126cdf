"""Namespaces shared with the host, on hand-built snapshots: the host network (directly and
through ``container:`` chains, by id or by name), the lesser shared namespace, and the
pid, ipc, uts and user namespaces."""

from __future__ import annotations

import pytest

from tests.builders import compose, conclude, container, hits, only, port, snapshot, subjects


@pytest.mark.rule("host-network")
def test_the_host_network_is_flagged_and_a_bridge_is_not():
    snap = snapshot([container("hostnet", network_mode="host"), container("bridged"), container("isolated", network_mode="none")])
    found = hits(conclude(snap), "host-network")
    assert set(found) == {"hostnet"}
    spec = found["hostnet"]
    assert (spec.cis, spec.severity, spec.exposed) == ("5.10", "high", True)
    assert spec.evidence == {"HostConfig.NetworkMode": "host", "namespace_chain": ["hostnet (NetworkMode=host)"]}
    assert "Run container 'hostnet' on a user-defined bridge network" in spec.remediation


def test_host_network_remediation_publishes_the_ports_the_image_exposes_on_loopback():
    snap = snapshot([container("hostnet-web", network_mode="host", exposed_ports=("53/udp", "8080/tcp"))])
    remedy = only(conclude(snap), "host-network").remediation
    assert "replace --network host with --network <app-net> -p 127.0.0.1:53:53/udp -p 127.0.0.1:8080:8080" in remedy
    assert 'ports: ["127.0.0.1:53:53/udp", "127.0.0.1:8080:8080"]' in remedy


def test_host_network_remediation_prefers_configured_bindings_and_else_a_placeholder():
    bound = container("bound", network_mode="host", ports=[port(80, 8080)], exposed_ports=("80/tcp", "9000/tcp"))
    bare = container("bare", network_mode="host")
    found = hits(conclude(snapshot([bound, bare])), "host-network")
    assert "--network <app-net> -p 127.0.0.1:8080:80\n" in found["bound"].remediation
    assert "--network <app-net> -p 127.0.0.1:PORT:PORT" in found["bare"].remediation


@pytest.mark.rule("host-network", "shared-network-namespace")
def test_the_host_network_is_inherited_through_container_modes_by_id_or_by_name():
    owner = container("owner", network_mode="host")
    sidecar = container("sidecar", network_mode=f"container:{owner.id}")  # how the engine records it
    second = container("sidecar-of-sidecar", network_mode="container:sidecar")  # as written
    app = container("app")
    app_sidecar = container("app-sidecar", network_mode=f"container:{app.id[:12]}")  # a short id
    specs = conclude(snapshot([owner, sidecar, second, app, app_sidecar]))
    assert subjects(specs, "host-network") == {"owner", "sidecar", "sidecar-of-sidecar"}
    chained = hits(specs, "host-network")["sidecar-of-sidecar"]
    assert [c.split(" ")[0] for c in chained.evidence["namespace_chain"]] == ["sidecar-of-sidecar", "sidecar", "owner"]
    assert "(it inherits the host network from 'owner', fix that one first)" in chained.remediation
    assert "replace --network container:sidecar with --network <app-net>" in chained.remediation
    # Sharing a bridged container's namespace is a different, lesser finding, and the
    # host-network sidecars are not reported twice.
    shared = hits(specs, "shared-network-namespace")
    assert set(shared) == {"app-sidecar"}
    assert shared["app-sidecar"].severity == "low" and shared["app-sidecar"].evidence["shares_with"] == "app"
    assert "deliberate sidecar of 'app'" in shared["app-sidecar"].remediation


def test_a_stopped_host_network_container_still_counts_and_says_it_is_stopped():
    owner = container("owner", running=False, network_mode="host")
    sidecar = container("sidecar", network_mode="container:owner")
    found = hits(conclude(snapshot([owner, sidecar])), "host-network")
    assert (found["owner"].running, found["sidecar"].running) == (False, True)


@pytest.mark.rule("shared-network-namespace")
def test_a_chain_to_a_missing_or_looping_container_ends_without_error():
    gone = container("orphan", network_mode="container:removed-long-ago")
    loop_a = container("loop-a", network_mode="container:loop-b")
    loop_b = container("loop-b", network_mode="container:loop-a")
    specs = conclude(snapshot([gone, loop_a, loop_b, container("plain")]))
    assert subjects(specs, "host-network") == set()
    shared = hits(specs, "shared-network-namespace")
    assert set(shared) == {"orphan", "loop-a", "loop-b"}
    assert shared["orphan"].evidence["shares_with"] == "removed-long-ago"
    assert shared["loop-a"].evidence["shares_with"] == "loop-b"


def test_a_compose_sidecar_is_told_in_compose_terms():
    app = container("shop-app-1", labels=compose("shop", "app"))
    side = container("shop-proxy-1", network_mode=f"container:{app.id}", labels=compose("shop", "proxy"))
    spec = only(conclude(snapshot([app, side])), "shared-network-namespace")
    assert spec.subject_key == "shop/proxy"
    assert "Give service 'proxy' of compose project 'shop' its own network namespace" in spec.remediation
    assert "replace network_mode: service:shop-app-1 with networks: [app-net]" in spec.remediation


@pytest.mark.parametrize(
    ("rule_id", "cis", "severity", "field", "flag", "compose_key"),
    [
        pytest.param(*case, marks=pytest.mark.rule(case[0]), id=case[0])
        for case in (
            ("host-pid", "5.16", "high", "pid_mode", "pid", "pid"),
            ("host-ipc", "5.17", "medium", "ipc_mode", "ipc", "ipc"),
            ("host-uts", "5.21", "medium", "uts_mode", "uts", "uts"),
            ("host-userns", "5.31", "medium", "userns_mode", "userns", "userns_mode"),
        )
    ],
)
def test_host_namespaces_are_flagged_on_host_only(rule_id, cis, severity, field, flag, compose_key):
    snap = snapshot(
        [
            container("shares", running=False, **{field: "host"}),
            container("own"),  # the engine's defaults: "" or "private"
            container("joins-another", **{field: "container:own"}),
            container("shareable", **{field: "shareable"}),
        ]
    )
    specs = conclude(snap)
    assert subjects(specs, rule_id) == {"shares"}
    spec = only(specs, rule_id)
    assert (spec.cis, spec.severity, spec.running) == (cis, severity, False)
    assert spec.evidence["flag"] == f"--{flag}=host"
    assert f"docker run: remove --{flag}=host" in spec.remediation and f"compose: delete {compose_key}: host" in spec.remediation
    assert "Run container 'shares' without the host" in spec.remediation
    # Each namespace is its own rule: --pid=host says nothing about the others.
    others = {"host-pid", "host-ipc", "host-uts", "host-userns"} - {rule_id}
    assert not {s.rule_id for s in specs} & others
