"""Reachability and firewall-bypass rules on hand-built snapshots: what containers reach on the
host, and which published ports the host firewall means to block but Docker forwards."""

from __future__ import annotations

from pathlib import Path

from posture.collector.firewall import parse_iptables_save, parse_nft_ruleset
from posture.collector.snapshot import HostState, Listener

from .snapshots import bridge, container, found, port, snapshot, user_network

FIREWALL = Path(__file__).parent / "fixtures" / "firewall"
POSTGRES = Listener("127.0.0.1", 5432, "tcp", "postgres")
SSHD = Listener("0.0.0.0", 22, "tcp", "sshd")
REDIS_ANY = Listener("0.0.0.0", 6379, "tcp", "redis-server")
ON_GATEWAY = Listener("172.20.0.1", 8125, "udp", "statsd")
ELSEWHERE = Listener("192.0.2.10", 9100, "tcp", "node_exporter")


def host(*listeners: Listener, firewall=None, firewall_error: str = "") -> HostState:
    return HostState(listeners=listeners, listeners_source="ss -Hltnup", firewall=firewall, firewall_error=firewall_error)


def test_a_host_network_container_reaches_every_host_listener_loopback_first():
    snap = snapshot(container("edge", network_mode="host"), host=host(SSHD, POSTGRES, ELSEWHERE))
    reach = found(snap, "host-network-reaches-listener")
    assert set(reach) == {"edge#tcp/127.0.0.1:5432", "edge#tcp/0.0.0.0:22", "edge#tcp/192.0.2.10:9100"}
    pg = reach["edge#tcp/127.0.0.1:5432"]
    assert pg.severity == "critical"  # sensitive, and loopback-only: it trusts its callers
    assert pg.evidence["reach"] == "reaches PostgreSQL on 127.0.0.1:5432, process postgres"
    assert pg.evidence["listener"] == "127.0.0.1:5432" and pg.evidence["bound_to"] == "loopback only"
    assert "container 'edge' is on the host network, so it reaches PostgreSQL on 127.0.0.1:5432" in pg.remediation
    assert "replace --network host with --network app-net" in pg.remediation
    assert reach["edge#tcp/0.0.0.0:22"].severity == "low"
    ordered = [s.key for s in found(snap, "host-network-reaches-listener").values()]
    assert ordered[0] == "tcp/127.0.0.1:5432"  # loopback ones come first


def test_a_container_joined_to_a_host_network_container_reaches_them_too():
    snap = snapshot(container("edge", network_mode="host"), container("side", network_mode="container:edge"), host=host(POSTGRES))
    spec = found(snap, "host-network-reaches-listener")["side#tcp/127.0.0.1:5432"]
    assert "through the namespace of 'edge'" in spec.evidence["via"]
    assert "replace --network container:edge" in spec.remediation


def test_bridged_containers_reach_listeners_on_every_address_and_on_their_gateway():
    snap = snapshot(
        container("app", network="app"),
        networks=(bridge(), user_network("app")),
        host=host(POSTGRES, REDIS_ANY, ON_GATEWAY, ELSEWHERE, SSHD),
    )
    reach = found(snap, "bridge-reaches-host-listener")
    assert set(reach) == {"app#tcp/0.0.0.0:6379", "app#udp/172.20.0.1:8125", "app#tcp/0.0.0.0:22"}
    redis = reach["app#tcp/0.0.0.0:6379"]
    assert redis.severity == "high"
    assert redis.evidence["reached_at"] == ["172.20.0.1:6379 (app)"]
    assert "reaches Redis on 0.0.0.0:6379, process redis-server at 172.20.0.1:6379 through the gateway of network 'app'" in redis.evidence["reach"]
    assert "bind Redis to 127.0.0.1" in redis.remediation and "iptables -I INPUT -i br-" in redis.remediation
    assert reach["app#udp/172.20.0.1:8125"].severity == "low"  # bound to the gateway on purpose
    assert reach["app#tcp/0.0.0.0:22"].severity == "info"
    assert found(snap, "host-network-reaches-listener") == {}


def test_published_ports_are_not_counted_as_host_services():
    proxy = Listener("0.0.0.0", 8080, "tcp", "docker-proxy")
    same_port = Listener("0.0.0.0", 9000, "tcp", "")
    snap = snapshot(
        container("web", port_bindings=(port(80, 8080), port(9000, 9000))),
        container("edge", network_mode="host"),
        host=host(proxy, same_port),
    )
    assert found(snap, "host-network-reaches-listener") == {} and found(snap, "bridge-reaches-host-listener") == {}
    # The same port number on another address is a host service of its own.
    other = Listener("192.0.2.10", 8080, "tcp", "nginx")
    snap = snapshot(container("web", port_bindings=(port(80, 8080, "127.0.0.1"),)), container("edge", network_mode="host"), host=host(other))
    assert set(found(snap, "host-network-reaches-listener")) == {"edge#tcp/192.0.2.10:8080"}


def test_without_host_listeners_the_rules_are_silent_and_a_read_error_is_reported():
    assert found(snapshot(container("edge", network_mode="host")), "host-network-reaches-listener") == {}
    snap = snapshot(container("edge", network_mode="host"), host=HostState(listeners_error="ssh to ssh://h failed: Permission denied"))
    [unread] = found(snap, "host-listeners-unread").values()
    assert unread.severity == "info" and "Permission denied" in unread.evidence["error"]
    assert "edge" in found(snap, "host-network")  # the container findings stand


# --- the firewall Docker bypasses -----------------------------------------------------


def fw(name: str):
    text = (FIREWALL / name).read_text()
    return parse_nft_ruleset(text) if name.endswith(".nft") else parse_iptables_save(text)


def test_ufw_blocked_ports_that_docker_forwards_are_reported():
    snap = snapshot(
        container("db", port_bindings=(port(5432, 5432),)),
        container("web", port_bindings=(port(80, 8080),)),
        container("admin", port_bindings=(port(443, 8443, "127.0.0.1"),)),
        container("ssh-ish", port_bindings=(port(22, 22),)),
        host=host(firewall=fw("ufw-docker.iptables")),
    )
    bypass = found(snap, "firewall-bypassed-by-docker")
    assert set(bypass) == {"db#5432/tcp:*", "web#80/tcp:*"}
    db = bypass["db#5432/tcp:*"]
    assert db.severity == "critical" and db.evidence["service"] == "PostgreSQL"
    assert db.evidence["frontends"] == ["ufw"]
    assert "denies new inbound traffic by default (policy DROP of INPUT) and no INPUT rule accepts tcp/5432" in db.evidence["input"]
    assert db.evidence["docker_forward"] == "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 5432 -j DNAT --to-destination 172.17.0.2:5432"
    assert db.evidence["docker_user"] == "no rule restricts this port"
    assert "iptables -I DOCKER-USER -i <external-interface> -p tcp -m conntrack --ctorigdstport 5432 -j DROP" in db.remediation
    assert "replace -p 5432:5432 with -p 127.0.0.1:5432:5432" in db.remediation
    web = bypass["web#80/tcp:*"]
    assert web.severity == "high" and "only from 10.0.0.0/8" in web.evidence["input"]
    assert "! -s 10.0.0.0/8" in web.remediation  # keep the sources INPUT meant to allow


def test_a_docker_user_rule_that_restricts_lowers_the_finding_and_is_named():
    snap = snapshot(
        container("db", network="backend", port_bindings=(port(5432, 5432),)),
        container("cache", network="backend", port_bindings=(port(6379, 6379),)),
        container("web", port_bindings=(port(80, 8080),)),
        networks=(bridge(), user_network("backend")),
        host=host(firewall=fw("input-drop-docker-user.iptables")),
    )
    bypass = found(snap, "firewall-bypassed-by-docker")
    assert bypass["db#5432/tcp:*"].severity == "low"
    assert bypass["db#5432/tcp:*"].evidence["docker_user"] == ["-A DOCKER-USER -i eth0 -p tcp -m conntrack --ctorigdstport 5432 -j DROP"]
    assert "DOCKER-USER restricts it" in bypass["db#5432/tcp:*"].remediation
    assert bypass["cache#6379/tcp:*"].severity == "low"
    assert bypass["web#80/tcp:*"].severity == "high"


def test_a_stopped_container_is_reported_as_forwarded_once_it_starts():
    snap = snapshot(container("db", port_bindings=(port(3306, 13306),), running=False), host=host(firewall=fw("firewalld.iptables")))
    spec = found(snap, "firewall-bypassed-by-docker")["db#3306/tcp:*"]
    assert spec.running is False and spec.evidence["docker_forward"] == "when started"
    assert spec.evidence["frontends"] == ["firewalld"]


def test_no_finding_where_the_firewall_allows_the_port_or_docker_does_not_forward_it():
    open_host = snapshot(container("cache", port_bindings=(port(6379, 6379),)), host=host(firewall=fw("open-host.iptables")))
    assert found(open_host, "firewall-bypassed-by-docker") == {}
    # The engine runs without iptables: docker-proxy listens on the host and INPUT applies.
    no_dnat = snapshot(container("cache", port_bindings=(port(6379, 16379),)), host=host(firewall=fw("ufw-docker.iptables")))
    assert found(no_dnat, "firewall-bypassed-by-docker") == {}


def test_where_the_firewall_cannot_be_read_the_finding_says_so():
    snap = snapshot(
        container("web", port_bindings=(port(80, 8080),)),
        container("local", port_bindings=(port(80, 8081, "127.0.0.1"),)),
        host=host(firewall_error="firewall rules cannot be read: `iptables-save`: Permission denied (you must be root)"),
    )
    [unread] = found(snap, "firewall-unread").values()
    assert unread.evidence["ports_not_judged"] == ["web 8080:80"]
    assert "Permission denied" in unread.evidence["error"] and "sudo -n" in unread.remediation
    assert found(snap, "firewall-bypassed-by-docker") == {}
