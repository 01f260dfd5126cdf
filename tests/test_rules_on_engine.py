"""Every rule on real containers, both ways: flagged when it should be, silent when not.

Containers that cannot start in this sandbox (--privileged, --cap-add ALL, host
devices) are only created: the rules judge configuration, and stopped containers
count because they can start at any time.
"""

from __future__ import annotations

import docker
import pytest

from .conftest import need
from .engines import IMAGE
from .observe import conclusions, hits, subjects

# --- namespaces ---------------------------------------------------------------------


def test_host_network_is_flagged_and_bridge_is_not(engine):
    engine.container("hostnet", network_mode="host")
    engine.container("bridged")
    specs = conclusions(engine.url)
    found = hits(specs, "host-network")
    assert set(found) == {"hostnet"}
    assert found["hostnet"].cis == "5.10" and found["hostnet"].severity == "high"
    assert "replace --network host with --network <app-net>" in found["hostnet"].remediation


def test_host_network_is_inherited_through_container_network_modes(engine):
    owner = engine.container("owner", network_mode="host")
    engine.container("sidecar", network_mode=f"container:{owner.id}")
    engine.container("sidecar-of-sidecar", network_mode="container:sidecar")
    app = engine.container("app")
    engine.container("app-sidecar", network_mode=f"container:{app.id}")
    specs = conclusions(engine.url)
    assert subjects(specs, "host-network") == {"owner", "sidecar", "sidecar-of-sidecar"}
    chain = hits(specs, "host-network")["sidecar-of-sidecar"].evidence["namespace_chain"]
    assert [c.split(" ")[0] for c in chain] == ["sidecar-of-sidecar", "sidecar", "owner"]
    # Sharing a bridged container's namespace is a different, lesser finding.
    assert subjects(specs, "shared-network-namespace") == {"app-sidecar"}


@pytest.mark.parametrize(
    ("rule", "cis", "option"),
    [
        ("host-pid", "5.16", {"pid_mode": "host"}),
        ("host-ipc", "5.17", {"ipc_mode": "host"}),
        ("host-uts", "5.21", {"uts_mode": "host"}),
        ("host-userns", "5.31", {"userns_mode": "host"}),
    ],
)
def test_host_namespaces(engine, rule, cis, option):
    engine.container("shares", start=False, **option)
    engine.container("own")
    found = hits(conclusions(engine.url), rule)
    assert set(found) == {"shares"} and found["shares"].cis == cis
    assert found["shares"].running is False


# --- ports ------------------------------------------------------------------------


def test_ports_on_every_interface_ipv4_and_ipv6_but_not_loopback(engine):
    engine.container("all-if", ports={"80/tcp": 18180})
    engine.container("v6-any", ports={"80/tcp": ("::", 18181)})
    engine.container("v4-any", ports={"80/tcp": ("0.0.0.0", 18182)})
    engine.container("loopback", ports={"80/tcp": ("127.0.0.1", 18183)})
    engine.container("stopped", start=False, ports={"80/tcp": 18184})
    specs = conclusions(engine.url)
    found = hits(specs, "port-all-interfaces")
    assert {k.split("#")[0] for k in found} == {"all-if", "v6-any", "v4-any", "stopped"}
    assert found["v6-any#80/tcp:::"].evidence["address_family"] == "IPv6"
    assert found["all-if#80/tcp:*"].evidence["address_family"] == "IPv4 and IPv6"
    assert found["stopped#80/tcp:*"].running is False
    assert "replace -p 18180:80 with -p 127.0.0.1:18180:80" in found["all-if#80/tcp:*"].remediation
    assert 'replace "18180:80" with "127.0.0.1:18180:80"' in found["all-if#80/tcp:*"].remediation
    # 5.9 lists every publication, loopback included.
    assert {"all-if", "v6-any", "v4-any", "loopback", "stopped"} == subjects(specs, "port-published")


def test_database_port_on_every_interface_is_critical_keyed_by_container_port(engine):
    engine.container("pg", ports={"5432/tcp": 15432})
    engine.container("pg-local", ports={"5432/tcp": ("127.0.0.1", 15433)})
    engine.container("redis-odd-port", start=False, ports={"6379/tcp": 16380})
    found = hits(conclusions(engine.url), "port-sensitive-service-exposed")
    assert set(found) == {"pg#5432/tcp", "redis-odd-port#6379/tcp"}
    assert found["pg#5432/tcp"].severity == "critical"
    assert found["pg#5432/tcp"].evidence["service"] == "PostgreSQL"
    assert "-p 127.0.0.1:15432:5432" in found["pg#5432/tcp"].remediation
    assert '"127.0.0.1:15432:5432"' in found["pg#5432/tcp"].remediation


def test_privileged_host_ports(engine):
    engine.container("low-port", start=False, ports={"80/tcp": 80})
    engine.container("high-port", start=False, ports={"80/tcp": 18080})
    found = hits(conclusions(engine.url), "port-privileged-host-port")
    assert set(found) == {"low-port#80/tcp"} and found["low-port#80/tcp"].cis == "5.8"


def test_publish_all_ports(engine):
    api = engine.client.api
    created = api.create_container(IMAGE, "sleep 3600", name="dash-p", ports=[8080], host_config=api.create_host_config(publish_all_ports=True))
    engine.created.append(created["Id"])
    engine.container("explicit", start=False, ports={"8080/tcp": ("127.0.0.1", 18085)})
    specs = conclusions(engine.url)
    assert subjects(specs, "port-publish-all") == {"dash-p"}
    # -P binds on every interface too.
    assert "dash-p" in subjects(specs, "port-all-interfaces")


# --- capabilities and privilege -------------------------------------------------------


def test_added_capabilities_graded_by_the_worst(engine):
    engine.container("net-admin", cap_add=["NET_ADMIN"])
    engine.container("net-raw", cap_add=["NET_RAW"])
    engine.container("all-caps", start=False, cap_add=["ALL"])
    engine.container("dropped", cap_drop=["ALL"])
    found = hits(conclusions(engine.url), "capabilities-added")
    assert set(found) == {"net-admin", "net-raw", "all-caps"}
    assert (found["net-admin"].severity, found["net-raw"].severity, found["all-caps"].severity) == ("high", "medium", "critical")
    assert "firewall" in found["net-admin"].evidence["why"]["NET_ADMIN"]
    assert "remove --cap-add NET_ADMIN" in found["net-admin"].remediation


def test_privileged(engine):
    engine.container("priv", start=False, privileged=True)
    engine.container("plain", start=False)
    found = hits(conclusions(engine.url), "privileged")
    assert set(found) == {"priv"} and found["priv"].severity == "critical" and found["priv"].cis == "5.5"


# --- mounts and devices ------------------------------------------------------------


@pytest.mark.parametrize("socket_path", ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock"])
def test_engine_sockets_are_critical_even_read_only(engine, socket_path):
    engine.container("sock-ro", start=False, volumes={socket_path: {"bind": "/var/run/docker.sock", "mode": "ro"}})
    engine.container("data", start=False, volumes={"/srv/posture-test-data": {"bind": "/data", "mode": "rw"}})
    found = hits(conclusions(engine.url), "docker-socket-mounted")
    assert set(found) == {"sock-ro#/var/run/docker.sock"}
    spec = found["sock-ro#/var/run/docker.sock"]
    assert spec.severity == "critical" and spec.cis == "5.32"
    assert "socket proxy" in spec.remediation and "':ro' does not help" in spec.remediation


def test_sensitive_host_paths(engine):
    engine.container("root-rw", start=False, volumes={"/": {"bind": "/host", "mode": "rw"}})
    engine.container("etc-ro", start=False, volumes={"/etc": {"bind": "/host-etc", "mode": "ro"}})
    engine.container("app-data", start=False, volumes={"/srv/posture-test-data": {"bind": "/data", "mode": "rw"}})
    found = hits(conclusions(engine.url), "sensitive-host-path")
    assert set(found) == {"root-rw#/host", "etc-ro#/host-etc"}
    assert (found["root-rw#/host"].severity, found["etc-ro#/host-etc"].severity) == ("high", "medium")


def test_host_devices(engine):
    engine.container("tun", start=False, devices=["/dev/net/tun:/dev/net/tun"])
    engine.container("no-dev", start=False)
    found = hits(conclusions(engine.url), "host-devices")
    assert set(found) == {"tun#/dev/net/tun"} and found["tun#/dev/net/tun"].severity == "high"


# --- networks ------------------------------------------------------------------------


def test_default_bridge_recognised_by_name_not_docker0(engine):
    engine.network("app-net")
    engine.container("on-default")
    engine.container("on-app", network="app-net")
    specs = conclusions(engine.url)
    found = hits(specs, "default-bridge")
    assert set(found) == {"on-default"}
    # This engine's bridge is not called docker0.
    assert found["on-default"].evidence["bridge_interface"] != "docker0"
    assert "bridge" in subjects(specs, "icc-default-bridge")


def test_icc_on_user_bridges_with_several_members(engine):
    engine.network("crowded")
    engine.network("isolated", options={"com.docker.network.bridge.enable_icc": "false"})
    engine.network("lonely")
    for name, net in (("web-a", "crowded"), ("web-b", "crowded"), ("iso-c", "isolated"), ("iso-d", "isolated"), ("solo-e", "lonely")):
        engine.container(name, network=net)
    assert subjects(conclusions(engine.url), "icc-user-bridge") == {"crowded"}


def test_network_sysctls_and_host_gateway(engine):
    engine.container("router", start=False, sysctls={"net.ipv4.ip_forward": "1"})
    engine.container("gw", start=False, extra_hosts={"host.docker.internal": "host-gateway"})
    engine.container("static-host", start=False, extra_hosts={"db": "10.213.99.5"})
    specs = conclusions(engine.url)
    assert subjects(specs, "net-sysctls") == {"router"}
    assert subjects(specs, "host-gateway") == {"gw"}


def test_ipv6_network_with_published_ports(engine):
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.214.5.0/24"), docker.types.IPAMPool(subnet="fd00:db8:5::/64")])
    engine.network("v6net", enable_ipv6=True, ipam=ipam)
    engine.container("v6-web", start=False, network="v6net", ports={"80/tcp": ("127.0.0.1", 18190)})
    engine.container("v6-quiet", start=False, network="v6net")
    assert subjects(conclusions(engine.url), "ipv6-published") == {"v6-web"}


def test_macvlan_network_bypasses_the_firewall(engine):
    try:
        engine.network("flat", driver="macvlan", options={"parent": engine.bridge})
    except docker.errors.APIError as exc:
        need(f"this kernel cannot create macvlan links ({exc.explanation})")
    found = hits(conclusions(engine.url), "macvlan-network")
    assert set(found) == {"flat"} and found["flat"].evidence["Driver"] == "macvlan"


# --- the daemon ----------------------------------------------------------------------


def test_daemon_misconfigurations_on_the_exposed_engine(exposed_engine):
    exposed_engine.client.networks.create("plain-overlay", driver="overlay", attachable=True)
    exposed_engine.client.networks.create("sealed-overlay", driver="overlay", attachable=True, options={"encrypted": ""})
    specs = conclusions(exposed_engine.tcp_url, insecure=True)
    rules = {s.rule_id for s in specs}
    assert {"daemon-tcp-no-tls", "insecure-registries", "swarm-mode"} <= rules
    tcp = hits(specs, "daemon-tcp-no-tls")["test-host"]
    assert tcp.severity == "critical" and tcp.cis == "2.7"
    assert any("without encryption" in w for w in tcp.evidence["Warnings"])
    assert hits(specs, "insecure-registries")["test-host"].evidence["RegistryConfig.insecure"] == ["10.9.0.0/16"]
    assert subjects(specs, "overlay-unencrypted") == {"plain-overlay"}
    # This engine remaps user namespaces: 2.9 is satisfied.
    assert "userns-remap-off" not in rules


def test_daemon_defaults_on_the_plain_engine(engine):
    specs = conclusions(engine.url)
    rules = {s.rule_id for s in specs}
    assert {"userns-remap-off", "no-authorization-plugin", "daemon-rootful", "icc-default-bridge"} <= rules
    assert not rules & {"daemon-tcp-no-tls", "daemon-tls-no-client-verify", "insecure-registries", "swarm-mode", "overlay-unencrypted"}


def test_host_network_remediation_names_the_ports_the_image_exposes(engine):
    api = engine.client.api
    created = api.create_container(IMAGE, "sleep 3600", name="hostnet-web", ports=[8080, (53, "udp")], host_config=api.create_host_config(network_mode="host"))
    engine.created.append(created["Id"])
    remedy = hits(conclusions(engine.url), "host-network")["hostnet-web"].remediation
    assert "--network <app-net> -p 127.0.0.1:53:53/udp -p 127.0.0.1:8080:8080" in remedy
    assert '"127.0.0.1:53:53/udp", "127.0.0.1:8080:8080"' in remedy
