"""What containers reach on the host itself, on hand-built snapshots: every host listener
from the host network (directly or through a ``container:`` chain), listeners on every
address or on the gateway from a bridge, published ports left to the port rules, and a
host whose listeners could not be read."""

from __future__ import annotations

import pytest

from posture.collector.snapshot import Listener
from tests.builders import conclude, container, default_networks, hits, host_state, only, port, snapshot, subjects, user_network

POSTGRES = Listener("127.0.0.1", 5432, "tcp", "postgres")
SSHD = Listener("0.0.0.0", 22, "tcp", "sshd")
REDIS_ANY = Listener("0.0.0.0", 6379, "tcp", "redis-server")
ON_GATEWAY = Listener("172.20.0.1", 8125, "udp", "statsd")
ELSEWHERE = Listener("192.0.2.10", 9100, "tcp", "node_exporter")


@pytest.mark.rule("host-network-reaches-listener")
def test_a_host_network_container_reaches_every_host_listener_loopback_first():
    snap = snapshot([container("edge", network_mode="host"), container("bridged")], host=host_state(SSHD, POSTGRES, ELSEWHERE))
    reach = hits(conclude(snap), "host-network-reaches-listener")
    assert set(reach) == {"edge#tcp/127.0.0.1:5432", "edge#tcp/0.0.0.0:22", "edge#tcp/192.0.2.10:9100"}
    pg = reach["edge#tcp/127.0.0.1:5432"]
    assert pg.severity == "critical"  # sensitive, and loopback-only: it trusts its callers
    assert pg.evidence["reach"] == "reaches PostgreSQL on 127.0.0.1:5432, process postgres"
    assert pg.evidence["listener"] == "127.0.0.1:5432" and pg.evidence["bound_to"] == "loopback only"
    assert pg.evidence["listeners_read_with"] == "ss -Hltnup"
    assert "container 'edge' is on the host network, so it reaches PostgreSQL on 127.0.0.1:5432" in pg.remediation
    assert "replace --network host with --network app-net" in pg.remediation
    assert reach["edge#tcp/0.0.0.0:22"].severity == "low"
    assert list(reach)[0] == "edge#tcp/127.0.0.1:5432"  # loopback ones come first


@pytest.mark.rule("host-network-reaches-listener")
def test_a_container_joined_to_a_host_network_container_reaches_them_too():
    snap = snapshot(
        [
            container("edge", network_mode="host"),
            container("side", network_mode="container:edge"),
            container("app"),
            container("app-side", network_mode="container:app"),
        ],
        host=host_state(POSTGRES),
    )
    reach = hits(conclude(snap), "host-network-reaches-listener")
    assert set(reach) == {"edge#tcp/127.0.0.1:5432", "side#tcp/127.0.0.1:5432"}
    spec = reach["side#tcp/127.0.0.1:5432"]
    assert "through the namespace of 'edge'" in spec.evidence["via"]
    assert "replace --network container:edge" in spec.remediation


@pytest.mark.rule("bridge-reaches-host-listener")
def test_bridged_containers_reach_listeners_on_every_address_and_on_their_gateway():
    snap = snapshot(
        [container("app", networks=["app"]), container("isolated", network_mode="none")],
        networks=[*default_networks(), user_network("app")],
        host=host_state(POSTGRES, REDIS_ANY, ON_GATEWAY, ELSEWHERE, SSHD),
    )
    specs = conclude(snap)
    reach = hits(specs, "bridge-reaches-host-listener")
    assert set(reach) == {"app#tcp/0.0.0.0:6379", "app#udp/172.20.0.1:8125", "app#tcp/0.0.0.0:22"}  # not loopback, not elsewhere
    redis = reach["app#tcp/0.0.0.0:6379"]
    assert redis.severity == "high"
    assert redis.evidence["reached_at"] == ["172.20.0.1:6379 (app)"]
    assert "reaches Redis on 0.0.0.0:6379, process redis-server at 172.20.0.1:6379 through the gateway of network 'app'" in redis.evidence["reach"]
    assert "bind Redis to 127.0.0.1" in redis.remediation and "iptables -I INPUT -i br-" in redis.remediation
    assert reach["app#udp/172.20.0.1:8125"].severity == "low"  # bound to the gateway on purpose
    assert reach["app#tcp/0.0.0.0:22"].severity == "info"
    assert hits(specs, "host-network-reaches-listener") == {}


def test_the_default_bridge_reaches_the_host_at_its_own_gateway_through_docker0():
    snap = snapshot([container("web")], host=host_state(REDIS_ANY))
    spec = only(conclude(snap), "bridge-reaches-host-listener")
    assert spec.evidence["reached_at"] == ["172.17.0.1:6379 (bridge)"]
    assert "iptables -I INPUT -i docker0 -p tcp --dport 6379 -j DROP" in spec.remediation


@pytest.mark.rule("host-network-reaches-listener", "bridge-reaches-host-listener")
def test_published_ports_are_not_counted_as_host_services():
    proxy = Listener("0.0.0.0", 8080, "tcp", "docker-proxy")
    same_port = Listener("0.0.0.0", 9000, "tcp", "")
    snap = snapshot([container("web", ports=[port(80, 8080), port(9000, 9000)]), container("edge", network_mode="host")], host=host_state(proxy, same_port))
    specs = conclude(snap)
    assert hits(specs, "host-network-reaches-listener") == {} and hits(specs, "bridge-reaches-host-listener") == {}
    # The same port number on another address is a host service of its own.
    other = Listener("192.0.2.10", 8080, "tcp", "nginx")
    everywhere = Listener("0.0.0.0", 8081, "tcp", "nginx")
    snap = snapshot([container("web", ports=[port(80, 8080, ip="127.0.0.1")]), container("edge", network_mode="host")], host=host_state(other, everywhere))
    specs = conclude(snap)
    assert set(hits(specs, "host-network-reaches-listener")) == {"edge#tcp/192.0.2.10:8080", "edge#tcp/0.0.0.0:8081"}
    assert set(hits(specs, "bridge-reaches-host-listener")) == {"web#tcp/0.0.0.0:8081"}


@pytest.mark.rule("host-listeners-unread")
def test_without_host_listeners_the_rules_are_silent_and_a_read_error_is_reported():
    specs = conclude(snapshot([container("edge", network_mode="host")]))
    assert hits(specs, "host-network-reaches-listener") == {} and hits(specs, "host-listeners-unread") == {}
    snap = snapshot([container("edge", network_mode="host")], host=host_state(listeners_error="ssh to ssh://h failed: Permission denied"))
    specs = conclude(snap)
    unread = only(specs, "host-listeners-unread")
    assert unread.severity == "info" and unread.subject_type == "host" and "Permission denied" in unread.evidence["error"]
    assert subjects(specs, "host-network") == {"edge"}  # the container findings stand
