"""The host firewall Docker bypasses, on hand-built snapshots and rulesets recorded from real
hosts (``tests/fixtures/firewall``: ufw, firewalld, plain INPUT with DOCKER-USER, an open
host): published ports INPUT means to block but Docker forwards, what DOCKER-USER restricts,
and a firewall that could not be read."""

from __future__ import annotations

import pytest

from tests.builders import conclude, container, default_networks, hits, host_state, only, port, recorded_firewall, snapshot, user_network


@pytest.mark.rule("firewall-bypassed-by-docker")
def test_ufw_blocked_ports_that_docker_forwards_are_reported():
    snap = snapshot(
        [
            container("db", ports=[port(5432, 5432)]),
            container("web", ports=[port(80, 8080)]),
            container("admin", ports=[port(443, 8443, ip="127.0.0.1")]),
            container("ssh-ish", ports=[port(22, 22)]),
        ],
        host=host_state(firewall=recorded_firewall("ufw-docker.iptables")),
    )
    bypass = hits(conclude(snap), "firewall-bypassed-by-docker")
    assert set(bypass) == {"db#5432/tcp:*", "web#80/tcp:*"}  # loopback is not forwarded; INPUT allows 22
    db = bypass["db#5432/tcp:*"]
    assert db.severity == "critical" and db.exposed and db.evidence["service"] == "PostgreSQL"
    assert db.evidence["frontends"] == ["ufw"]
    assert "denies new inbound traffic by default (policy DROP of INPUT) and no INPUT rule accepts tcp/5432" in db.evidence["input"]
    assert db.evidence["docker_forward"] == "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 5432 -j DNAT --to-destination 172.17.0.2:5432"
    assert db.evidence["docker_user"] == "no rule restricts this port"
    assert "iptables -I DOCKER-USER -i <external-interface> -p tcp -m conntrack --ctorigdstport 5432 -j DROP" in db.remediation
    assert "replace -p 5432:5432 with -p 127.0.0.1:5432:5432" in db.remediation
    web = bypass["web#80/tcp:*"]
    assert web.severity == "high" and "only from 10.0.0.0/8" in web.evidence["input"]
    assert "! -s 10.0.0.0/8" in web.remediation  # keep the sources INPUT meant to allow


@pytest.mark.rule("firewall-bypassed-by-docker")
def test_a_docker_user_rule_that_restricts_lowers_the_finding_and_is_named():
    snap = snapshot(
        [
            container("db", networks=["backend"], ports=[port(5432, 5432)]),
            container("cache", networks=["backend"], ports=[port(6379, 6379)]),
            container("web", ports=[port(80, 8080)]),
            container("worker", networks=["backend"]),
        ],
        networks=[*default_networks(), user_network("backend")],
        host=host_state(firewall=recorded_firewall("input-drop-docker-user.iptables")),
    )
    bypass = hits(conclude(snap), "firewall-bypassed-by-docker")
    assert set(bypass) == {"db#5432/tcp:*", "cache#6379/tcp:*", "web#80/tcp:*"}
    db = bypass["db#5432/tcp:*"]
    assert db.severity == "low" and not db.exposed
    assert db.evidence["docker_user"] == ["-A DOCKER-USER -i eth0 -p tcp -m conntrack --ctorigdstport 5432 -j DROP"]
    assert "DOCKER-USER restricts it" in db.remediation
    assert bypass["cache#6379/tcp:*"].severity == "low"
    assert bypass["web#80/tcp:*"].severity == "high"


def test_a_stopped_container_is_reported_as_forwarded_once_it_starts():
    snap = snapshot([container("db", ports=[port(3306, 13306)], running=False)], host=host_state(firewall=recorded_firewall("firewalld.iptables")))
    spec = hits(conclude(snap), "firewall-bypassed-by-docker")["db#3306/tcp:*"]
    assert spec.running is False and spec.evidence["docker_forward"] == "when started"
    assert spec.evidence["frontends"] == ["firewalld"]


def test_no_finding_where_the_firewall_allows_the_port_or_docker_does_not_forward_it():
    open_host = snapshot([container("cache", ports=[port(6379, 6379)])], host=host_state(firewall=recorded_firewall("open-host.iptables")))
    assert hits(conclude(open_host), "firewall-bypassed-by-docker") == {}
    # The engine runs without iptables: docker-proxy listens on the host and INPUT applies.
    no_dnat = snapshot([container("cache", ports=[port(6379, 16379)])], host=host_state(firewall=recorded_firewall("ufw-docker.iptables")))
    assert hits(conclude(no_dnat), "firewall-bypassed-by-docker") == {}


@pytest.mark.rule("firewall-unread")
def test_where_the_firewall_cannot_be_read_the_finding_says_so():
    error = "firewall rules cannot be read: `iptables-save`: Permission denied (you must be root)"
    snap = snapshot(
        [container("web", ports=[port(80, 8080)]), container("local", ports=[port(80, 8081, ip="127.0.0.1")])], host=host_state(firewall_error=error)
    )
    specs = conclude(snap)
    unread = only(specs, "firewall-unread")
    assert unread.subject_type == "host" and unread.evidence["ports_not_judged"] == ["web 8080:80"]
    assert "Permission denied" in unread.evidence["error"] and "sudo -n" in unread.remediation
    assert hits(specs, "firewall-bypassed-by-docker") == {}
    # Loopback publications only: nothing the firewall would have to filter, nothing to say.
    local = snapshot([container("local", ports=[port(80, 8081, ip="127.0.0.1")])], host=host_state(firewall_error=error))
    assert hits(conclude(local), "firewall-unread") == {}
