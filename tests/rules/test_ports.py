"""Published ports, on hand-built snapshots: every interface (IPv4, IPv6, empty host IP),
loopback, -P, stopped containers, sensitive services and low host ports; severity raised
by what the container holds; and the address a port really ends on, resolved the way
the engine resolves it (network defaults, the daemon's --ip, the bindings in force)."""

from __future__ import annotations

import pytest

from posture.collector.snapshot import HostSnapshot
from posture.rules.base import RuleContext
from posture.rules.bindings import EffectiveBinding, effective
from tests.builders import bind, compose, conclude, container, default_networks, hits, only, port, snapshot, subjects, user_network


@pytest.mark.rule("port-all-interfaces")
@pytest.mark.parametrize(
    ("host_ip", "family", "key"),
    [
        ("", "IPv4 and IPv6", "80/tcp:*"),  # -p 8080:80: the engine binds both families
        ("0.0.0.0", "IPv4", "80/tcp:0.0.0.0"),
        ("::", "IPv6", "80/tcp:::"),  # -p [::]:8080:80, as the engine reports it
        ("[::]", "IPv6", "80/tcp:[::]"),  # as an operator may write it
    ],
)
def test_a_port_on_every_interface_is_flagged_in_each_address_family(host_ip, family, key):
    snap = snapshot([container("web", ports=[port(80, 8080, ip=host_ip)]), container("quiet")])
    spec = hits(conclude(snap), "port-all-interfaces")[f"web#{key}"]
    assert spec.evidence["address_family"] == family and spec.evidence["interfaces"] == "every interface"
    assert spec.exposed is True and spec.running is True and spec.cis == "5.14" and spec.severity == "medium"


@pytest.mark.rule("port-all-interfaces")
@pytest.mark.parametrize("host_ip", ["127.0.0.1", "::1", "10.20.0.5", "fd00::5"])
def test_a_port_bound_to_one_address_is_not_on_every_interface(host_ip):
    snap = snapshot([container("local", ports=[port(80, 8080, ip=host_ip)]), container("open", ports=[port(80, 8081)])])
    assert subjects(conclude(snap), "port-all-interfaces") == {"open"}


def test_remediation_rewrites_the_very_binding_in_both_forms():
    snap = snapshot([container("web", ports=[port(80, 18180)]), container("dns", ports=[port(53, 5353, protocol="udp")])])
    found = hits(conclude(snap), "port-all-interfaces")
    web = found["web#80/tcp:*"].remediation
    assert "In container 'web'," in web
    assert "docker run: replace -p 18180:80 with -p 127.0.0.1:18180:80" in web
    assert 'compose: under ports:, replace "18180:80" with "127.0.0.1:18180:80"' in web
    dns = found["dns#53/udp:*"]
    assert "replace -p 5353:53/udp with -p 127.0.0.1:5353:53/udp" in dns.remediation
    assert dns.evidence["HostConfig.PortBindings"] == {"53/udp": [{"HostIp": "", "HostPort": "5353"}]}


def test_an_ipv6_binding_is_written_with_brackets_in_the_remediation():
    snap = snapshot([container("v6", ports=[port(80, 18282, ip="::")])])
    spec = only(conclude(snap), "port-all-interfaces")
    assert spec.evidence["binding"] == "[::]:18282:80"
    assert "replace -p [::]:18282:80 with -p 127.0.0.1:18282:80" in spec.remediation


def test_an_engine_chosen_host_port_keeps_its_form():
    spec = only(conclude(snapshot([container("ephemeral", ports=[port(8080)])])), "port-all-interfaces")
    assert spec.evidence["HostConfig.PortBindings"] == {"8080/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert "with -p 127.0.0.1::8080" in spec.remediation


@pytest.mark.rule("port-all-interfaces", "port-sensitive-service-exposed", "port-published")
def test_stopped_containers_are_judged_on_their_configuration():
    snap = snapshot([container("stopped-db", running=False, ports=[port(5432, 15442)]), container("idle", running=False)])
    specs = conclude(snap)
    for rule_id in ("port-all-interfaces", "port-sensitive-service-exposed", "port-published"):
        (spec,) = hits(specs, rule_id).values()
        assert spec.subject_name == "stopped-db" and spec.running is False, rule_id


@pytest.mark.rule("port-all-interfaces", "port-publish-all")
def test_publish_all_binds_every_exposed_port_on_every_interface():
    dash_p = container("dash-p", publish_all_ports=True, exposed_ports=("53/udp", "8080/tcp"))
    explicit = container("explicit", ports=[port(8080, 18085, ip="127.0.0.1")])
    specs = conclude(snapshot([dash_p, explicit]))
    assert set(hits(specs, "port-all-interfaces")) == {"dash-p#53/udp:*", "dash-p#8080/tcp:*"}
    spec = hits(specs, "port-publish-all")["dash-p"]
    assert spec.exposed is True and spec.evidence == {"HostConfig.PublishAllPorts": True, "Config.ExposedPorts": ["53/udp", "8080/tcp"]}
    assert "replace -P with -p 127.0.0.1::53 -p 127.0.0.1::8080" in spec.remediation
    assert "Stop publishing everything from container 'dash-p'" in spec.remediation


def test_publish_all_does_not_repeat_a_port_bound_explicitly():
    both = container("both", publish_all_ports=True, ports=[port(8080, 18086, ip="127.0.0.1")], exposed_ports=("8080/tcp", "9000/tcp"))
    assert set(hits(conclude(snapshot([both])), "port-all-interfaces")) == {"both#9000/tcp:*"}


def test_publish_all_of_an_image_that_exposes_nothing_gives_a_placeholder():
    spec = only(conclude(snapshot([container("bare", publish_all_ports=True)])), "port-publish-all")
    assert "replace -P with -p 127.0.0.1:HOSTPORT:PORT" in spec.remediation


# --- sensitive services ---------------------------------------------------------------------


@pytest.mark.rule("port-sensitive-service-exposed")
def test_a_database_on_every_interface_is_critical_keyed_by_its_container_port():
    snap = snapshot(
        [
            container("pg", ports=[port(5432, 15432)]),
            container("pg-local", ports=[port(5432, 15433, ip="127.0.0.1")]),
            container("redis-odd-port", ports=[port(6379, 16380, ip="::")]),
            container("web", ports=[port(80, 8080)]),
        ]
    )
    found = hits(conclude(snap), "port-sensitive-service-exposed")
    assert set(found) == {"pg#5432/tcp", "redis-odd-port#6379/tcp"}
    pg = found["pg#5432/tcp"]
    assert pg.severity == "critical" and pg.cis is None and pg.exposed is True
    assert pg.evidence["service"] == "PostgreSQL" and found["redis-odd-port#6379/tcp"].evidence["service"] == "Redis"
    assert "PostgreSQL (container port 5432) is reachable from any network the host is on." in pg.remediation
    assert "replace -p 15432:5432 with -p 127.0.0.1:15432:5432" in pg.remediation
    assert 'replace "15432:5432" with "127.0.0.1:15432:5432"' in pg.remediation
    assert "shared user-defined network and publish nothing at all" in pg.remediation


def test_a_sensitive_port_published_by_dash_p_is_found_too():
    spec = only(conclude(snapshot([container("cache", publish_all_ports=True, exposed_ports=("6379/tcp",))])), "port-sensitive-service-exposed")
    assert spec.key == "6379/tcp" and spec.evidence["binding"] == ":6379"


def test_a_compose_service_is_named_by_project_and_service():
    cache = container("shop-cache-1", ports=[port(6379, 16379)], labels=compose("shop", "cache"))
    spec = only(conclude(snapshot([cache])), "port-sensitive-service-exposed")
    assert spec.subject_key == "shop/cache" and spec.subject_name == "shop-cache-1"
    assert "In service 'cache' of compose project 'shop'," in spec.remediation


# --- privileged host ports -----------------------------------------------------------------


@pytest.mark.rule("port-privileged-host-port")
def test_host_ports_below_1024_are_flagged_and_others_are_not():
    snap = snapshot(
        [
            container("low-port", running=False, ports=[port(80, 80)]),
            container("edge-1022", ports=[port(443, 1022, ip="10.20.0.5")]),
            container("high-port", ports=[port(80, 1024)]),
            container("ephemeral", ports=[port(80)]),
        ]
    )
    found = hits(conclude(snap), "port-privileged-host-port")
    assert set(found) == {"low-port#80/tcp", "edge-1022#1022/tcp"}
    low = found["low-port#80/tcp"]
    assert low.cis == "5.8" and low.severity == "low" and low.exposed is True and low.running is False
    assert "Map container 'low-port' to an unprivileged host port and let a reverse proxy own port 80." in low.remediation
    assert "replace -p 80:80 with -p 127.0.0.1:8080:80" in low.remediation
    # An address-bound port keeps its address, and is not exposed everywhere.
    edge = found["edge-1022#1022/tcp"]
    assert edge.exposed is False and "replace -p 10.20.0.5:1022:443 with -p 10.20.0.5:11022:443" in edge.remediation


# --- the inventory item ---------------------------------------------------------------------


@pytest.mark.rule("port-published")
def test_every_publication_is_listed_loopback_included():
    snap = snapshot(
        [
            container("loopback", ports=[port(80, 18183, ip="127.0.0.1")]),
            container("two", ports=[port(80, 8080), port(443, 8443)]),
            container("unpublished", exposed_ports=("80/tcp",)),
        ]
    )
    found = hits(conclude(snap), "port-published")
    assert set(found) == {"loopback", "two"}
    two = found["two"]
    assert two.severity == "info" and two.cis == "5.9" and two.exposed is False
    assert two.evidence == {
        "published": ["8080:80", "8443:443"],
        "PublishAllPorts": False,
        "effective": {"8080:80": "0.0.0.0, ::", "8443:443": "0.0.0.0, ::"},  # where each one really listens
    }
    assert "Confirm that container 'two' needs each of 8080:80, 8443:443" in two.remediation
    assert 'compose: ports: ["127.0.0.1:8080:80", "127.0.0.1:8443:443"]' in two.remediation


@pytest.mark.rule("port-publish-all")
def test_publish_all_is_flagged_only_when_set():
    snap = snapshot([container("dash-p", publish_all_ports=True, exposed_ports=("80/tcp",)), container("plain", ports=[port(80, 8080)])])
    assert subjects(conclude(snap), "port-publish-all") == {"dash-p"}


# --- severity that follows context ----------------------------------------------------------


@pytest.mark.rule("port-all-interfaces")
def test_a_published_port_on_a_privileged_container_is_critical():
    snap = snapshot(
        [
            container("priv", privileged=True, ports=[port(80, 8080)], running=False),
            container("plain", ports=[port(80, 8081)], running=False),
            container("priv-local", privileged=True, ports=[port(80, 8082, ip="127.0.0.1")], running=False),
        ]
    )
    every = hits(conclude(snap), "port-all-interfaces")
    assert set(every) == {"priv#80/tcp:*", "plain#80/tcp:*"}  # a loopback port is not reported, so not raised
    assert every["plain#80/tcp:*"].severity == "medium"
    assert every["priv#80/tcp:*"].severity == "critical"
    assert "runs privileged" in every["priv#80/tcp:*"].remediation.splitlines()[0]


def test_a_published_port_on_a_container_holding_the_engine_socket_is_critical():
    sock = bind("/var/run/docker.sock", "/var/run/docker.sock")
    snap = snapshot([container("traefik", mounts=(sock,), ports=[port(80, 80)], running=False)])
    spec = only(conclude(snap), "port-all-interfaces")
    assert spec.severity == "critical" and "engine socket /var/run/docker.sock" in spec.evidence["severity_raised"]["because"][0]


# --- where a published port really listens: the engine's own resolution ------------------------


def resolved(snap: HostSnapshot, name: str) -> list[EffectiveBinding]:
    return effective(snap.container(name), RuleContext(snapshot=snap))


@pytest.mark.rule("port-all-interfaces")
def test_a_port_without_address_on_a_network_with_a_loopback_default_is_not_every_interface():
    snap = snapshot(
        [container("api", networks=["lo-net"], ports=[port(80, 8080)], running=False), container("web", ports=[port(80, 8081)], running=False)],
        networks=[*default_networks(), user_network("lo-net", binding="127.0.0.1")],
    )
    [eff] = resolved(snap, "api")
    assert eff.addresses == ("127.0.0.1",) and eff.loopback_only and not eff.all_interfaces
    assert "network 'lo-net'" in eff.how and "host_binding_ipv4=127.0.0.1" in eff.how
    specs = conclude(snap)
    assert subjects(specs, "port-all-interfaces") == {"web"}
    assert hits(specs, "port-published")["api"].evidence["effective"] == {"8080:80": "127.0.0.1"}


def test_the_daemon_default_ip_applies_on_the_default_bridge():
    snap = snapshot([container("web", ports=[port(80, 8080)], running=False)], networks=default_networks(host_binding="127.0.0.1"))
    [eff] = resolved(snap, "web")
    assert eff.addresses == ("127.0.0.1",)
    assert "default bridge" in eff.how and "--ip" in eff.how
    assert hits(conclude(snap), "port-all-interfaces") == {}


@pytest.mark.rule("port-all-interfaces")
def test_a_user_network_does_not_inherit_the_daemon_default():
    """The engine applies --ip to the default bridge only (moby/moby#18237)."""
    snap = snapshot(
        [container("web", networks=["app"], ports=[port(80, 8080)], running=False), container("legacy", ports=[port(80, 8081)], running=False)],
        networks=[*default_networks(host_binding="127.0.0.1"), user_network("app")],
    )
    [eff] = resolved(snap, "web")
    assert eff.addresses == ("0.0.0.0", "::") and eff.family == "IPv4 and IPv6"
    spec = only(conclude(snap), "port-all-interfaces")
    assert spec.subject_name == "web" and spec.evidence["effective_addresses"] == ["0.0.0.0", "::"]
    assert "network 'app' sets no default binding address" in spec.evidence["resolved_by"]


@pytest.mark.rule("port-all-interfaces")
def test_an_explicit_address_wins_over_the_network_default():
    snap = snapshot(
        [
            container("web", networks=["lo-net"], ports=[port(80, 8080, ip="0.0.0.0")], running=False),
            container("api", networks=["lo-net"], ports=[port(80, 8081)], running=False),
        ],
        networks=[*default_networks(), user_network("lo-net", binding="127.0.0.1")],
    )
    assert resolved(snap, "web")[0].addresses == ("0.0.0.0",)
    assert only(conclude(snap), "port-all-interfaces").evidence["address_family"] == "IPv4"


@pytest.mark.rule("port-all-interfaces")
def test_a_running_container_is_judged_on_the_bindings_in_force():
    # Configuration says every address, but the engine bound loopback (an option the
    # snapshot cannot see, such as a daemon restarted with another --ip): believe the engine.
    snap = snapshot([container("web", ports=[port(80, 8080)], bound_ports=(port(80, 8080, ip="127.0.0.1"),)), container("open", ports=[port(80, 8081)])])
    [eff] = resolved(snap, "web")
    assert eff.in_force and eff.addresses == ("127.0.0.1",)
    assert "bound now" in eff.how and "the configuration alone would give 0.0.0.0, ::" in eff.how
    spec = only(conclude(snap), "port-all-interfaces")
    assert spec.subject_name == "open" and "NetworkSettings.Ports" in spec.evidence["resolved_by"]


def test_ephemeral_host_ports_are_matched_to_what_was_bound():
    snap = snapshot([container("web", ports=[port(80)], bound_ports=(port(80, 32768, ip="0.0.0.0"), port(80, 32768, ip="::")))])
    [eff] = resolved(snap, "web")
    assert eff.host_port == 32768 and eff.all_interfaces and "as configured" in eff.how


def test_host_network_containers_publish_nothing():
    snap = snapshot([container("edge", network_mode="host", ports=[port(80, 80)], running=False)])
    [eff] = resolved(snap, "edge")
    assert not eff.published and "publishes no ports" in eff.how
    specs = conclude(snap)
    assert hits(specs, "port-all-interfaces") == {}
    assert subjects(specs, "host-network") == {"edge"}


def test_publish_all_resolves_through_the_network_default():
    snap = snapshot(
        [container("svc", networks=["lo-net"], publish_all_ports=True, exposed_ports=("9000/tcp",), running=False)],
        networks=[*default_networks(), user_network("lo-net", binding="127.0.0.1")],
    )
    assert resolved(snap, "svc")[0].addresses == ("127.0.0.1",)
    assert hits(conclude(snap), "port-all-interfaces") == {}
