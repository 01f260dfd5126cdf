"""Scenario containers shared by the agreement test and the fixture recorder."""

from __future__ import annotations

from .engines import TestEngine


def mixed_exposure(engine: TestEngine) -> None:
    """One of everything a network-posture review looks for, on one engine."""
    engine.network("app-net")
    engine.container("caps", cap_add=["NET_ADMIN", "NET_RAW"])
    engine.container("web", ports={"80/tcp": 18280, "443/tcp": ("0.0.0.0", 18243)})
    engine.container("hostnet", network_mode="host")
    engine.container("pid-ipc", pid_mode="host", ipc_mode="host")
    engine.container("uts-user", uts_mode="host", userns_mode="host")
    engine.container("sock", volumes={"/run/posture-test/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}})
    engine.container("loopback-only", ports={"80/tcp": ("127.0.0.1", 18281)}, network="app-net")
    engine.container("v6-only", ports={"80/tcp": ("::", 18282)})
    engine.container("inherits", network_mode="container:hostnet")
    engine.container("stopped-priv", start=False, privileged=True, ports={"5432/tcp": 15442})
    engine.container(
        "compose-db",
        ports={"6379/tcp": 16379},
        network="app-net",
        labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "cache", "com.docker.compose.container-number": "1"},
    )


def exposed_daemon(engine: TestEngine) -> None:
    """A swarm manager with a plain and an encrypted overlay (start with ``ARGS``)."""
    engine.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:23790")
    engine.client.networks.create("plain-overlay", driver="overlay", attachable=True)
    engine.client.networks.create("sealed-overlay", driver="overlay", attachable=True, options={"encrypted": ""})
    engine.container("svc", ports={"9200/tcp": 19200})


exposed_daemon.ARGS = ["-H", "tcp://127.0.0.1:23789", "--insecure-registry", "10.9.0.0/16"]


COMPOSE = {"com.docker.compose.project": "shop", "com.docker.compose.service": "web", "com.docker.compose.container-number": "1"}


def simulator_templates(engine: TestEngine) -> None:
    """One container per exposure the simulated fleet mixes, plus a history of events
    (create, start, rename, connect, disconnect, die, destroy) for ``posture/simulate``."""
    engine.network("shop_default", labels={"com.docker.compose.network": "default", "com.docker.compose.project": "shop"})
    engine.container("clean")
    engine.container("published", ports={"80/tcp": 18380, "443/tcp": ("0.0.0.0", 18343)})
    engine.container("compose-web", network="shop_default", labels=COMPOSE, ports={"8080/tcp": ("127.0.0.1", 18381)})
    engine.container("v6-only", ports={"5432/tcp": ("::", 18382)})
    engine.container("hostnet", network_mode="host")
    engine.container("caps", cap_add=["NET_ADMIN", "NET_RAW"])
    engine.container("pid-host", pid_mode="host")
    engine.container("sock", volumes={"/run/posture-test/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}})
    engine.container("privileged", start=False, privileged=True, ports={"6379/tcp": 18383})
    exited = engine.container("exited", command="true")
    exited.wait(timeout=30)
    # Events only: a rename, a connect and disconnect, a stop and a removal.
    temp = engine.container("temp-old")
    temp.rename("temp")
    engine.client.networks.get("shop_default").connect(temp)
    engine.client.networks.get("shop_default").disconnect(temp)
    temp.stop(timeout=1)
    temp.remove()
    engine.network("scratch").remove()
