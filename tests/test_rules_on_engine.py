"""The collector and the rules agree with a real engine: each setting, as the engine
records it (``HostIp`` "" or "::", ``container:<id>``, ``ExposedPorts`` from the image,
``Mounts[].RW``, the default bridge's own interface name, ``/info``'s warnings), reaches
the rule that judges it. Every rule's edge cases, evidence and remediation are tested
on hand-built snapshots in ``tests/rules/``; this layer proves the snapshots are honest.

Containers that cannot start in this sandbox (--privileged, --cap-add ALL, host
devices) are only created: the rules judge configuration, and stopped containers
count because they can start at any time.
"""

from __future__ import annotations

import docker

from .conftest import free_port, need
from .engines import IMAGE
from .observe import conclusions, hits, snapshot_of, subjects


def test_port_bindings_as_the_engine_records_them(engine):
    engine.container("all-if", ports={"80/tcp": 18180})
    engine.container("v6-any", ports={"80/tcp": ("::", 18181)})
    engine.container("v4-any", ports={"80/tcp": ("0.0.0.0", 18182)})
    engine.container("loopback", ports={"80/tcp": ("127.0.0.1", 18183)})
    engine.container("stopped", start=False, ports={"80/tcp": 18184})
    engine.container("pg", ports={"5432/tcp": 15432})
    engine.container("pg-local", ports={"5432/tcp": ("127.0.0.1", 15433)})
    engine.container("redis-odd-port", start=False, ports={"6379/tcp": 16380})
    engine.container("low-port", start=False, ports={"80/tcp": 80})
    api = engine.client.api
    created = api.create_container(IMAGE, "sleep 3600", name="dash-p", ports=[8080], host_config=api.create_host_config(publish_all_ports=True))
    engine.created.append(created["Id"])
    specs = conclusions(engine.url)

    found = hits(specs, "port-all-interfaces")
    assert {k.split("#")[0] for k in found} == {"all-if", "v6-any", "v4-any", "stopped", "pg", "redis-odd-port", "low-port", "dash-p"}
    assert found["v6-any#80/tcp:::"].evidence["address_family"] == "IPv6"
    assert found["v4-any#80/tcp:0.0.0.0"].evidence["address_family"] == "IPv4"
    assert found["all-if#80/tcp:*"].evidence["address_family"] == "IPv4 and IPv6"
    assert "replace -p 18180:80 with -p 127.0.0.1:18180:80" in found["all-if#80/tcp:*"].remediation
    assert found["stopped#80/tcp:*"].running is False
    assert "dash-p#8080/tcp:*" in found  # -P: the image's exposed port, on every interface
    assert set(hits(specs, "port-sensitive-service-exposed")) == {"pg#5432/tcp", "redis-odd-port#6379/tcp"}
    assert set(hits(specs, "port-privileged-host-port")) == {"low-port#80/tcp"}
    assert subjects(specs, "port-publish-all") == {"dash-p"}
    assert subjects(specs, "port-published") == {"all-if", "v6-any", "v4-any", "loopback", "stopped", "pg", "pg-local", "redis-odd-port", "low-port", "dash-p"}


def test_network_binding_defaults_as_the_engine_applies_them(engine):
    # Running containers bind these host ports: free ones, so suites side by side do not collide.
    on_lo, on_open = free_port(), free_port()
    engine.network("lo-net", driver="bridge", options={"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    engine.network("open-net", driver="bridge")
    engine.container("on-lo", ports={"80/tcp": on_lo}, network="lo-net")
    engine.container("on-lo-stopped", start=False, ports={"80/tcp": 18481}, network="lo-net")
    engine.container("on-open", ports={"80/tcp": on_open}, network="open-net")
    assert snapshot_of(engine.url).container("on-lo").bound_ports[0].host_ip == "127.0.0.1"  # what the engine did
    specs = conclusions(engine.url)
    every = hits(specs, "port-all-interfaces")
    assert {k.split("#")[0] for k in every} == {"on-open"}
    assert "NetworkSettings.Ports" in every["on-open#80/tcp:*"].evidence["resolved_by"]
    published = hits(specs, "port-published")
    assert published["on-lo"].evidence["effective"] == {f"{on_lo}:80": "127.0.0.1"}
    assert published["on-lo-stopped"].evidence["effective"] == {"18481:80": "127.0.0.1"}


def test_context_severity_as_the_engine_records_it(engine):
    engine.container("priv-lo", start=False, privileged=True, ports={"80/tcp": ("127.0.0.1", 18490)})
    engine.container("priv-any", start=False, privileged=True, ports={"80/tcp": 18491})
    engine.container("router", start=False, network_mode="host", cap_add=["NET_ADMIN"])
    specs = conclusions(engine.url)
    every = hits(specs, "port-all-interfaces")
    assert set(every) == {"priv-any#80/tcp:*"} and every["priv-any#80/tcp:*"].severity == "critical"  # a loopback port is not raised
    assert hits(specs, "capabilities-added")["router"].severity == "critical"


def test_namespaces_as_the_engine_records_them(engine):
    owner = engine.container("owner", network_mode="host")
    engine.container("sidecar", network_mode=f"container:{owner.id}")
    engine.container("sidecar-of-sidecar", network_mode="container:sidecar")  # the engine records the id
    app = engine.container("app")
    engine.container("app-sidecar", network_mode=f"container:{app.id}")
    engine.container("pid", start=False, pid_mode="host")
    engine.container("ipc", start=False, ipc_mode="host")
    engine.container("uts", start=False, uts_mode="host")
    engine.container("userns", start=False, userns_mode="host")
    api = engine.client.api
    created = api.create_container(IMAGE, "sleep 3600", name="hostnet-web", ports=[8080, (53, "udp")], host_config=api.create_host_config(network_mode="host"))
    engine.created.append(created["Id"])
    specs = conclusions(engine.url)

    assert subjects(specs, "host-network") == {"owner", "sidecar", "sidecar-of-sidecar", "hostnet-web"}
    chain = hits(specs, "host-network")["sidecar-of-sidecar"].evidence["namespace_chain"]
    assert [c.split(" ")[0] for c in chain] == ["sidecar-of-sidecar", "sidecar", "owner"]
    assert subjects(specs, "shared-network-namespace") == {"app-sidecar"}
    # The image's exposed ports, as the engine reports them, make the remediation.
    assert "--network <app-net> -p 127.0.0.1:53:53/udp -p 127.0.0.1:8080:8080" in hits(specs, "host-network")["hostnet-web"].remediation
    for rule_id, name in (("host-pid", "pid"), ("host-ipc", "ipc"), ("host-uts", "uts"), ("host-userns", "userns")):
        assert subjects(specs, rule_id) == {name}, rule_id
        assert hits(specs, rule_id)[name].running is False


def test_privileges_mounts_and_devices_as_the_engine_records_them(engine):
    engine.container("net-admin", cap_add=["NET_ADMIN"])
    engine.container("net-raw", cap_add=["NET_RAW"])
    engine.container("all-caps", start=False, cap_add=["ALL"])
    engine.container("dropped", cap_drop=["ALL"])
    engine.container("priv", start=False, privileged=True)
    engine.container("sock-ro", start=False, volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}})
    engine.container("podman-sock", start=False, volumes={"/run/podman/podman.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}})
    engine.container("root-rw", start=False, volumes={"/": {"bind": "/host", "mode": "rw"}})
    engine.container("etc-ro", start=False, volumes={"/etc": {"bind": "/host-etc", "mode": "ro"}})
    engine.container("app-data", start=False, volumes={"/srv/posture-test-data": {"bind": "/data", "mode": "rw"}})
    engine.container("tun", start=False, devices=["/dev/net/tun:/dev/net/tun"])
    specs = conclusions(engine.url)

    caps = hits(specs, "capabilities-added")
    assert {k: s.severity for k, s in caps.items()} == {"net-admin": "high", "net-raw": "medium", "all-caps": "critical"}
    assert subjects(specs, "privileged") == {"priv"}
    sockets = hits(specs, "docker-socket-mounted")
    assert set(sockets) == {"sock-ro#/var/run/docker.sock", "podman-sock#/var/run/docker.sock"}
    assert sockets["sock-ro#/var/run/docker.sock"].evidence["Mounts"]["RW"] is False  # read-only still counts
    paths = hits(specs, "sensitive-host-path")
    assert {k: s.severity for k, s in paths.items()} == {"root-rw#/host": "high", "etc-ro#/host-etc": "medium"}
    assert set(hits(specs, "host-devices")) == {"tun#/dev/net/tun"}


def test_networks_as_the_engine_records_them(engine):
    engine.network("app-net")
    engine.network("crowded")
    engine.network("isolated", options={"com.docker.network.bridge.enable_icc": "false"})
    engine.network("lonely")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.214.5.0/24"), docker.types.IPAMPool(subnet="fd00:db8:5::/64")])
    engine.network("v6net", enable_ipv6=True, ipam=ipam)
    engine.container("on-default")
    engine.container("on-app", network="app-net")
    # /networks lists running members only: these must run to count.
    for name, net in (("web-a", "crowded"), ("web-b", "crowded"), ("iso-c", "isolated"), ("iso-d", "isolated"), ("solo-e", "lonely")):
        engine.container(name, network=net)
    engine.container("router", start=False, network="app-net", sysctls={"net.ipv4.ip_forward": "1"})
    engine.container("gw", start=False, network="app-net", extra_hosts={"host.docker.internal": "host-gateway"})
    engine.container("static-host", start=False, network="app-net", extra_hosts={"db": "10.213.99.5"})
    engine.container("v6-web", start=False, network="v6net", ports={"80/tcp": ("127.0.0.1", 18190)})
    engine.container("v6-quiet", start=False, network="v6net")
    specs = conclusions(engine.url)

    default = hits(specs, "default-bridge")
    assert set(default) == {"on-default"}
    assert default["on-default"].evidence["bridge_interface"] == engine.bridge  # not docker0
    assert subjects(specs, "icc-default-bridge") == {"bridge"}
    assert subjects(specs, "icc-user-bridge") == {"crowded"}
    assert subjects(specs, "net-sysctls") == {"router"}
    assert subjects(specs, "host-gateway") == {"gw"}  # whichever form this engine records
    assert subjects(specs, "ipv6-published") == {"v6-web"}


def test_macvlan_network_as_the_engine_records_it(engine):
    try:
        engine.network("flat", driver="macvlan", options={"parent": engine.bridge})
    except docker.errors.APIError as exc:
        need(f"this kernel cannot create macvlan links ({exc.explanation})")
    found = hits(conclusions(engine.url), "macvlan-network")
    assert set(found) == {"flat"} and found["flat"].evidence["Driver"] == "macvlan"


def test_daemon_misconfigurations_on_the_exposed_engine(exposed_engine):
    exposed_engine.client.networks.create("plain-overlay", driver="overlay", attachable=True)
    exposed_engine.client.networks.create("sealed-overlay", driver="overlay", attachable=True, options={"encrypted": ""})
    specs = conclusions(exposed_engine.tcp_url, insecure=True)
    rules = {s.rule_id for s in specs}
    assert {"daemon-tcp-no-tls", "insecure-registries", "swarm-mode"} <= rules
    tcp = hits(specs, "daemon-tcp-no-tls")["test-host"]
    assert tcp.severity == "critical" and tcp.cis == "2.7"
    assert any("without encryption" in w for w in tcp.evidence["Warnings"])
    # Only what the operator added: the engine's own loopback CIDR is left out.
    assert hits(specs, "insecure-registries")["test-host"].evidence["RegistryConfig.insecure"] == ["10.9.0.0/16"]
    assert subjects(specs, "overlay-unencrypted") == {"plain-overlay"}
    # This engine remaps user namespaces: 2.9 is satisfied.
    assert "userns-remap-off" not in rules


def test_daemon_defaults_on_the_plain_engine(engine):
    specs = conclusions(engine.url)
    rules = {s.rule_id for s in specs}
    assert {"userns-remap-off", "no-authorization-plugin", "daemon-rootful", "icc-default-bridge"} <= rules
    assert not rules & {"daemon-tcp-no-tls", "daemon-tls-no-client-verify", "insecure-registries", "swarm-mode", "overlay-unencrypted"}
