"""The address a published port really ends on, resolved the way the engine resolves it."""

from __future__ import annotations

from posture.collector.snapshot import HostSnapshot
from posture.rules.base import RuleContext
from posture.rules.bindings import effective

from .observe import conclusions, hits, snapshot_of
from .snapshots import bridge, container, found, port, snapshot, user_network


def resolved(snap: HostSnapshot, name: str):
    return effective(snap.container(name), RuleContext(snapshot=snap))


def test_a_port_without_address_on_a_network_with_a_loopback_default_is_not_every_interface():
    snap = snapshot(
        container("api", network="lo-net", port_bindings=(port(80, 8080),), running=False),
        networks=(bridge(), user_network("lo-net", binding="127.0.0.1")),
    )
    [eff] = resolved(snap, "api")
    assert eff.addresses == ("127.0.0.1",) and eff.loopback_only and not eff.all_interfaces
    assert "network 'lo-net'" in eff.how and "host_binding_ipv4=127.0.0.1" in eff.how
    assert found(snap, "port-all-interfaces") == {}
    assert found(snap, "port-published")["api"].evidence["effective"] == {"8080:80": "127.0.0.1"}


def test_the_daemon_default_ip_applies_on_the_default_bridge():
    snap = snapshot(container("web", port_bindings=(port(80, 8080),), running=False), networks=(bridge(host_binding="127.0.0.1"),))
    [eff] = resolved(snap, "web")
    assert eff.addresses == ("127.0.0.1",)
    assert "default bridge" in eff.how and "--ip" in eff.how
    assert found(snap, "port-all-interfaces") == {}


def test_a_user_network_does_not_inherit_the_daemon_default():
    """The engine applies --ip to the default bridge only (moby/moby#18237)."""
    snap = snapshot(
        container("web", network="app", port_bindings=(port(80, 8080),), running=False),
        networks=(bridge(host_binding="127.0.0.1"), user_network("app")),
    )
    [eff] = resolved(snap, "web")
    assert eff.addresses == ("0.0.0.0", "::") and eff.family == "IPv4 and IPv6"
    spec = found(snap, "port-all-interfaces")["web#80/tcp:*"]
    assert spec.evidence["effective_addresses"] == ["0.0.0.0", "::"]
    assert "network 'app' sets no default binding address" in spec.evidence["resolved_by"]


def test_an_explicit_address_wins_over_the_network_default():
    snap = snapshot(
        container("web", network="lo-net", port_bindings=(port(80, 8080, "0.0.0.0"),), running=False),
        networks=(bridge(), user_network("lo-net", binding="127.0.0.1")),
    )
    assert resolved(snap, "web")[0].addresses == ("0.0.0.0",)
    assert found(snap, "port-all-interfaces")["web#80/tcp:0.0.0.0"].evidence["address_family"] == "IPv4"


def test_a_running_container_is_judged_on_the_bindings_in_force():
    # Configuration says every address, but the engine bound loopback (an option the
    # snapshot cannot see, such as a daemon restarted with another --ip): believe the engine.
    snap = snapshot(
        container("web", port_bindings=(port(80, 8080),), bound_ports=(port(80, 8080, "127.0.0.1"),)),
        networks=(bridge(),),
    )
    [eff] = resolved(snap, "web")
    assert eff.in_force and eff.addresses == ("127.0.0.1",)
    assert "bound now" in eff.how and "the configuration alone would give 0.0.0.0, ::" in eff.how
    assert found(snap, "port-all-interfaces") == {}


def test_ephemeral_host_ports_are_matched_to_what_was_bound():
    snap = snapshot(container("web", port_bindings=(port(80),), bound_ports=(port(80, 32768, "0.0.0.0"), port(80, 32768, "::"))))
    [eff] = resolved(snap, "web")
    assert eff.host_port == 32768 and eff.all_interfaces and "as configured" in eff.how


def test_host_network_containers_publish_nothing():
    snap = snapshot(container("edge", network_mode="host", port_bindings=(port(80, 80),), running=False))
    [eff] = resolved(snap, "edge")
    assert not eff.published and "publishes no ports" in eff.how
    assert found(snap, "port-all-interfaces") == {}
    assert "edge" in found(snap, "host-network")


def test_publish_all_resolves_through_the_network_default():
    snap = snapshot(
        container("svc", network="lo-net", publish_all_ports=True, exposed_ports=("9000/tcp",), running=False),
        networks=(bridge(), user_network("lo-net", binding="127.0.0.1")),
    )
    assert resolved(snap, "svc")[0].addresses == ("127.0.0.1",)
    assert found(snap, "port-all-interfaces") == {}


# --- on a real engine ----------------------------------------------------------------


def test_a_user_network_with_a_loopback_binding_gives_no_every_interface_finding(engine):
    engine.network("lo-net", driver="bridge", options={"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    engine.network("open-net", driver="bridge")
    engine.container("on-lo", ports={"80/tcp": 18480}, network="lo-net")
    engine.container("on-lo-stopped", start=False, ports={"80/tcp": 18481}, network="lo-net")
    engine.container("on-open", ports={"80/tcp": 18482}, network="open-net")
    snap = snapshot_of(engine.url)
    assert snap.container("on-lo").bound_ports[0].host_ip == "127.0.0.1"  # what the engine did
    specs = conclusions(engine.url)
    every = hits(specs, "port-all-interfaces")
    assert {k.split("#")[0] for k in every} == {"on-open"}
    assert "NetworkSettings.Ports" in every["on-open#80/tcp:*"].evidence["resolved_by"]
    published = hits(specs, "port-published")
    assert published["on-lo"].evidence["effective"] == {"18480:80": "127.0.0.1"}
    assert published["on-lo-stopped"].evidence["effective"] == {"18481:80": "127.0.0.1"}
