"""Docker networks and what their members reach, on hand-built snapshots: the default
bridge found by name, ICC, sysctls, host-gateway, IPv6, macvlan/ipvlan and overlays."""

from __future__ import annotations

import pytest

from tests.builders import conclude, container, default_bridge, default_networks, hits, network, only, port, snapshot, subjects


@pytest.mark.rule("default-bridge")
def test_the_default_bridge_is_recognised_by_name_whatever_its_interface():
    snap = snapshot(
        [
            container("on-default"),
            container("on-app", networks=["app-net"]),
            container("on-both", networks=["app-net", "bridge"]),
            container("hostnet", network_mode="host"),
            container("alone", network_mode="none"),
        ],
        networks=[*default_networks(interface="pst3e0"), network("app-net")],
    )
    found = hits(conclude(snap), "default-bridge")
    assert set(found) == {"on-default", "on-both"}
    spec = found["on-default"]
    assert (spec.cis, spec.severity) == ("5.30", "low")
    assert spec.evidence == {"NetworkSettings.Networks": ["bridge"], "bridge_interface": "pst3e0", "HostConfig.NetworkMode": "default"}
    assert "Move container 'on-default' to a user-defined network" in spec.remediation


def test_a_user_network_named_like_docker0_is_not_the_default_bridge():
    snap = snapshot([container("app", networks=["docker0"])], networks=[*default_networks(), network("docker0")])
    assert subjects(conclude(snap), "default-bridge") == set()


@pytest.mark.rule("icc-default-bridge")
def test_icc_on_the_default_bridge_read_from_its_own_option():
    on = conclude(snapshot(networks=default_networks(interface="br-lab")))
    spec = only(on, "icc-default-bridge")
    assert (spec.subject_name, spec.cis, spec.severity, spec.running) == ("bridge", "2.2", "medium", None)
    assert spec.evidence["com.docker.network.bridge.enable_icc"] == "true"
    assert "dockerd --icc=false" in spec.remediation
    off = conclude(snapshot(networks=default_networks(icc=False)))
    assert subjects(off, "icc-default-bridge") == set()


@pytest.mark.rule("icc-user-bridge")
def test_icc_on_user_bridges_with_several_members():
    snap = snapshot(
        [
            container("web-a", networks=["crowded"]),
            container("web-b", networks=["crowded"]),
            container("iso-c", networks=["isolated"]),
            container("iso-d", networks=["isolated"]),
            container("int-e", networks=["internal"]),
            container("int-f", networks=["internal"]),
            container("solo-g", networks=["lonely"]),
            container("stopped-h", running=False, networks=["lonely"]),  # /networks lists running members only
        ],
        networks=[
            *default_networks(),
            network("crowded"),
            network("isolated", options={"com.docker.network.bridge.enable_icc": "false"}),
            network("internal", internal=True),
            network("lonely"),
        ],
    )
    found = hits(conclude(snap), "icc-user-bridge")
    assert set(found) == {"crowded"}
    spec = found["crowded"]
    assert spec.evidence["containers"] == ["web-a", "web-b"] and spec.severity == "low"
    assert "Split 'crowded' so each network holds only containers that talk to each other" in spec.remediation
    assert "docker network create -o com.docker.network.bridge.enable_icc=false crowded-isolated" in spec.remediation


@pytest.mark.rule("net-sysctls")
def test_network_sysctls_only_the_net_ones():
    snap = snapshot(
        [
            container("router", running=False, sysctls={"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}),
            container("shm", sysctls={"kernel.shm_rmid_forced": "1"}),
        ]
    )
    found = hits(conclude(snap), "net-sysctls")
    assert set(found) == {"router"}
    spec = found["router"]
    assert spec.evidence == {"HostConfig.Sysctls": {"net.ipv4.ip_forward": "1"}} and spec.running is False
    assert "docker run: remove --sysctl net.ipv4.ip_forward=1" in spec.remediation
    assert "Check that container 'router' needs these kernel network settings" in spec.remediation


@pytest.mark.rule("host-gateway")
def test_host_gateway_in_either_engine_format():
    snap = snapshot(
        [
            container("gw-colon", extra_hosts=("host.docker.internal:host-gateway",)),
            container("gw-equals", extra_hosts=("host.docker.internal=host-gateway",)),  # newer engines
            container("static-host", extra_hosts=("db:10.213.99.5",)),
        ]
    )
    found = hits(conclude(snap), "host-gateway")
    assert set(found) == {"gw-colon", "gw-equals"}
    assert found["gw-colon"].evidence == {"HostConfig.ExtraHosts": ["host.docker.internal:host-gateway"]}
    assert "remove --add-host host.docker.internal:host-gateway" in found["gw-colon"].remediation


@pytest.mark.rule("ipv6-published")
def test_published_ports_on_an_ipv6_network():
    snap = snapshot(
        [
            container("v6-web", running=False, networks=["v6net"], ports=[port(80, 18190, ip="127.0.0.1")]),
            container("v6-dash-p", networks=["v6net"], publish_all_ports=True, exposed_ports=("80/tcp",)),
            container("v6-quiet", networks=["v6net"]),
            container("v4-web", networks=["v4net"], ports=[port(80, 18191)]),
        ],
        networks=[*default_networks(), network("v6net", enable_ipv6=True, subnets=("10.214.5.0/24", "fd00:db8:5::/64")), network("v4net")],
    )
    found = hits(conclude(snap), "ipv6-published")
    assert set(found) == {"v6-web#v6net", "v6-dash-p#v6net"}
    spec = found["v6-web#v6net"]
    assert spec.exposed is True and spec.running is False
    assert spec.evidence == {"network": "v6net", "EnableIPv6": True, "subnets": ["10.214.5.0/24", "fd00:db8:5::/64"], "published": ["127.0.0.1:18190:80"]}
    assert "Bind the ports of container 'v6-web' to explicit addresses" in spec.remediation
    assert "enable_ipv6: false on network 'v6net'" in spec.remediation


@pytest.mark.rule("macvlan-network")
@pytest.mark.parametrize("driver", ["macvlan", "ipvlan"])
def test_macvlan_and_ipvlan_networks_bypass_the_firewall(driver):
    snap = snapshot(
        [container("flat-box", networks=["flat"])],
        networks=[*default_networks(), network("flat", driver, options={"parent": "eth0"}), network("app-net")],
    )
    found = hits(conclude(snap), "macvlan-network")
    assert set(found) == {"flat"}
    spec = found["flat"]
    assert spec.severity == "high" and spec.exposed is True
    assert spec.evidence == {"network": "flat", "Driver": driver, "parent": "eth0", "containers": ["flat-box"]}
    assert f"driver: bridge instead of driver: {driver}" in spec.remediation


@pytest.mark.rule("overlay-unencrypted")
def test_overlays_without_encryption_but_not_the_ingress():
    snap = snapshot(
        networks=[
            *default_networks(),
            network("plain-overlay", "overlay"),
            network("sealed-overlay", "overlay", options={"encrypted": ""}),
            network("ingress", "overlay", ingress=True),
        ]
    )
    found = hits(conclude(snap), "overlay-unencrypted")
    assert set(found) == {"plain-overlay"}
    assert found["plain-overlay"].cis == "7.3"
    assert "docker network create -d overlay --opt encrypted plain-overlay" in found["plain-overlay"].remediation


def test_network_findings_are_keyed_by_network_name():
    spec = only(conclude(snapshot(networks=[default_bridge(), network("plain-overlay", "overlay")])), "overlay-unencrypted")
    assert (spec.subject_type, spec.subject_key, spec.subject_name) == ("network", "plain-overlay", "plain-overlay")
