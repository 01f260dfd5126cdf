"""The simulated fleet (``posture/simulate``): fake engines that the real docker SDK and
Posture's collector read like real ones, built from a real engine's recorded answers."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import docker
import docker.errors
import pytest
from django.core.management import CommandError, call_command

from posture.collector import parse_engine_url
from posture.collector.engine import collect
from posture.collector.parse import build_snapshot, parse_container
from posture.collector.snapshot import HostSnapshot
from posture.collector.target import EngineTarget
from posture.management.commands.simulate import register_simulated
from posture.models import DockerHost
from posture.rules import evaluate
from posture.simulate import Simulator, SimulatorError, simulated_fleet
from posture.simulate.answers import BRIDGE_SUBNET, SimContainer, SimNetwork, container_inspect, container_listed, network_inspect
from posture.simulate.catalog import Publish, Spec
from posture.simulate.host import SimHost
from posture.simulate.recording import load

from .processes import ROOT, process_env
from .waiting import wait_for

# What each intended exposure must raise, by rule id.
EXPOSURE_RULES = {
    "host-network": "host-network",
    "capabilities": "capabilities-added",
    "privileged": "privileged",
    "host-pid": "host-pid",
    "docker-socket": "docker-socket-mounted",
    "port-all-interfaces": "port-all-interfaces",
    "port-sensitive": "port-sensitive-service-exposed",
}


def snapshot(url: str, previous: HostSnapshot | None = None) -> HostSnapshot:
    return collect(EngineTarget(url=parse_engine_url(url), timeout=10), previous)


def client(url: str) -> docker.APIClient:
    return docker.APIClient(base_url=url, version="1.41", timeout=10)


@pytest.fixture(scope="module")
def fleet():
    with simulated_fleet(hosts=4, containers=50, seed=7) as running:
        yield running


def test_the_collector_reads_a_simulated_host_and_the_rules_see_the_intended_exposures(fleet):
    seen: Counter[str] = Counter()
    for sim, url in zip(fleet.hosts, fleet.urls, strict=True):
        snap = snapshot(url)
        assert snap.engine.name == sim.engine_name
        assert len(snap.containers) == 50
        assert {n.name for n in snap.networks} >= {"bridge", "host", "none"}
        found: dict[str, set[str]] = {}
        for spec in evaluate(snap, host_name=sim.name):
            if spec.rule_id in EXPOSURE_RULES.values():
                found.setdefault(spec.subject_name, set()).add(spec.rule_id)
        for c in sim.containers.values():
            expected = {EXPOSURE_RULES[e] for e in c.spec.exposures if e in EXPOSURE_RULES}
            assert found.get(c.name, set()) == expected, c.name
            seen.update(c.spec.exposures or {"clean"})
    # The fleet shows the whole spread, clean containers included.
    assert set(seen) == {*EXPOSURE_RULES, "port-loopback", "clean"}


def test_hosts_differ_and_the_same_seed_gives_the_same_fleet(fleet):
    first, second = fleet.hosts[0], fleet.hosts[1]
    assert first.engine_name != second.engine_name
    assert not set(first.containers) & set(second.containers)
    assert snapshot(fleet.urls[0]).digest() != snapshot(fleet.urls[1]).digest()
    rec = load()
    again = SimHost(rec, seed=7, index=1, containers=50, socket=first.socket, epoch_ns=time.time_ns())
    other = SimHost(rec, seed=8, index=1, containers=50, socket=first.socket, epoch_ns=time.time_ns())
    assert [(c.id, c.spec) for c in again.containers.values()][:10] == [(c.id, c.spec) for c in first.containers.values()][:10]
    assert set(other.containers).isdisjoint(first.containers)


def test_an_unchanged_host_answers_the_same_bytes_and_digest_every_poll(fleet):
    url = fleet.urls[2]
    api = client(url)
    raw = [api._get(api._url("/containers/json"), params={"all": 1}).content for _ in range(2)]
    assert raw[0] == raw[1]
    cold = snapshot(url)
    warm = snapshot(url, previous=cold)
    assert warm.digest() == cold.digest()
    assert warm.inspects_reused == 50  # nothing to re-inspect: the list answers did not move
    fleet.churn(3, 5)  # another host's churn leaves this one alone
    assert snapshot(url, previous=warm).digest() == cold.digest()
    assert api._get(api._url("/containers/json"), params={"all": 1}).content == raw[0]
    # The same answers without HTTP, for building history offline.
    offline = build_snapshot(collected_at=cold.collected_at, connection=cold.connection, **fleet.call(fleet.hosts[2].raw_answers))
    assert offline.digest() == cold.digest()


def test_churn_changes_the_answers_and_streams_the_events_a_real_engine_sends():
    with simulated_fleet(hosts=1, containers=20, seed=3) as fleet:
        url = fleet.urls[0]
        before = snapshot(url)
        api = client(url)
        started = time.time()
        live: list[dict] = []
        stream = api.events(decode=True, filters={"type": ["container"]})
        reader = threading.Thread(target=lambda: live.extend(stream), daemon=True)
        reader.start()
        done = fleet.churn(0, 6)
        assert len(done) == 6
        after = snapshot(url, previous=before)
        assert after.digest() != before.digest()
        log = fleet.events(0)
        containers_only = [e for e in log if e["Type"] == "container"]
        deadline = time.monotonic() + 10
        while len(live) < len(containers_only) and time.monotonic() < deadline:
            time.sleep(0.02)
        stream.close()
        assert live == containers_only
        # A client that goes away leaves no subscriber behind.
        wait_for(lambda: not fleet.call(lambda: len(fleet.hosts[0].subscribers)), timeout=10, what="the closed stream's subscriber to go")
        assert {e["Action"] for e in log} <= {"create", "start", "kill", "die", "stop", "destroy", "rename", "connect", "disconnect"}
        assert {"connect", "disconnect"} & {e["Action"] for e in log if e["Type"] == "network"}
        # Shaped as recorded from the real engine (API 1.41 keeps status/id/from).
        recorded = next(e for e in load().events if e["Type"] == "container" and e["Action"] == "start")
        assert set(containers_only[0]) == set(recorded)

        # ``since`` replays what happened since; ``until`` in the past closes the stream.
        replay = list(api.events(since=started, until=time.time(), decode=True))
        assert replay == log
        middle = log[len(log) // 2]["timeNano"]
        since_middle = list(api.events(since=f"{middle // 10**9}.{middle % 10**9:09d}", until=time.time(), decode=True))
        assert since_middle == [e for e in log if e["timeNano"] >= middle]
        starts = list(api.events(since=started, until=time.time(), decode=True, filters={"event": "start", "type": "container"}))
        assert starts and all(e["Action"] == "start" for e in starts)
        one = containers_only[0]["Actor"]["Attributes"]["name"]
        assert {e["Actor"]["Attributes"]["name"] for e in api.events(since=started, until=time.time(), decode=True, filters={"container": one})} == {one}


def test_events_resume_after_a_disconnect_without_a_gap():
    """What the watcher relies on: reconnect with ``since`` = the last event it saw."""
    with simulated_fleet(hosts=1, containers=10, seed=4) as fleet:
        api = client(fleet.urls[0])
        fleet.churn(0, 2)
        seen = list(api.events(since=0, until=time.time(), decode=True))
        last = seen[-1]["timeNano"]
        fleet.churn(0, 3)  # while "disconnected"
        resumed = list(api.events(since=f"{last // 10**9}.{last % 10**9:09d}", until=time.time(), decode=True))
        assert resumed[0] == seen[-1]  # ``since`` is inclusive, as on the engine
        assert seen + resumed[1:] == fleet.events(0)


def test_api_versions_errors_and_keep_alive(fleet):
    api = client(fleet.urls[0])
    assert api.ping() is True
    assert api.version()["ApiVersion"] == load().api_version
    assert api._get(f"{api.base_url}/v1.24/info").json()["Name"] == fleet.hosts[0].engine_name
    too_new = api._get(f"{api.base_url}/v1.99/version")
    assert too_new.status_code == 400 and "too new" in too_new.json()["message"]
    with pytest.raises(docker.errors.NotFound, match="No such container"):
        api.inspect_container("no-such-container")
    with pytest.raises(docker.errors.NotFound, match="not found"):
        api.inspect_network("no-such-network")
    assert api._get(f"{api.base_url}/v1.41/nothing/here").status_code == 404
    bad = api._get(f"{api.base_url}/v1.41/containers/json", params={"filters": json.dumps({"colour": ["red"]})})
    assert bad.status_code == 400 and "invalid filter" in bad.json()["message"]
    name = next(iter(fleet.hosts[0].containers.values())).name
    assert [c["Names"] for c in api.containers(all=True, filters={"name": name})] == [[f"/{name}"]]
    # By name and by id prefix, as the engine resolves them.
    assert api.inspect_container(name)["Name"] == f"/{name}"
    assert api.inspect_container(api.inspect_container(name)["Id"][:12])["Name"] == f"/{name}"


def test_connections_are_kept_alive_for_the_docker_sdk():
    with simulated_fleet(hosts=1, containers=3) as fleet:
        api = client(fleet.urls[0])
        for _ in range(20):
            api.containers(all=True)
            api.info()
        # The SDK's unix adapter keeps one pool per URL: two URLs, two kept-alive connections.
        assert fleet.open_connections(0) == 2


def _spec_like(recorded: dict) -> Spec:
    """The spec that should render as ``recorded`` (a container of the recording scenario)."""
    host = recorded["HostConfig"]
    ports = tuple(
        Publish(int(key.split("/")[0]), int(b["HostPort"]), b["HostIp"], key.split("/")[1])
        for key, bindings in (host["PortBindings"] or {}).items()
        for b in bindings
    )
    mode = host["NetworkMode"]
    return Spec(
        name=recorded["Name"].lstrip("/"),
        image=recorded["Config"]["Image"],
        network="bridge" if mode == "default" else mode,
        ports=ports,
        labels=tuple(sorted((recorded["Config"]["Labels"] or {}).items())),
        cap_add=tuple(host["CapAdd"] or ()),
        privileged=host["Privileged"],
        pid_host=host["PidMode"] == "host",
        docker_sock=bool(recorded["Mounts"]),
        command=tuple(recorded["Config"]["Cmd"]),
    )


def _shape(value: object) -> object:
    """Keys and types, not values: what a client's parser depends on."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if not k[0].isdigit()}  # port keys vary
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize("name", ["clean", "published", "compose-web", "v6-only", "hostnet", "caps", "pid-host", "sock", "privileged", "exited"])
def test_rendered_answers_match_the_recorded_engine(name):
    """Each recorded container, described as a spec and rendered, parses to what the real engine's answer parses to."""
    rec = load()
    recorded = rec.containers[name]
    state = recorded["State"]
    host = SimHost(rec, seed=1, index=1, containers=0, socket=None, epoch_ns=time.time_ns())
    spec = _spec_like(recorded)
    if spec.network not in ("bridge", "host"):
        host.networks["x" * 64] = SimNetwork(
            id="x" * 64, name=spec.network, driver="bridge", created_ns=0, subnet=BRIDGE_SUBNET, labels=rec.networks[spec.network]["Labels"]
        )
    sim = SimContainer(id=recorded["Id"], spec=spec, created_ns=1, state=state["Status"], started_ns=1 if state["StartedAt"][:4] != "0001" else 0)
    net = host.network_named(spec.network)
    if sim.running:
        sim.ip = "172.17.0.2" if net.subnet else ""
    rendered = container_inspect(rec, sim, net)
    ignore = {"id", "created", "attachments"}
    mine, theirs = parse_container(rendered), parse_container(recorded)
    assert {k: v for k, v in vars(mine).items() if k not in ignore} == {k: v for k, v in vars(theirs).items() if k not in ignore}
    assert [a.network for a in mine.attachments] == [a.network for a in theirs.attachments]
    assert _shape(rendered) == _shape(recorded)
    listed = container_listed(rec, sim, net, now_ns=time.time_ns())
    assert _shape(listed) == _shape(rec.listed[name])
    assert listed["Ports"] == sorted(rec.listed[name]["Ports"], key=lambda p: (p["PrivatePort"], p["Type"], p["IP"]))
    if name == "compose-web":
        assert _shape(network_inspect(rec, net, [sim])) == _shape(rec.networks["shop_default"])


def test_a_thousand_hosts_in_one_process(tmp_path):
    with simulated_fleet(hosts=1000, containers=2, seed=2, directory=tmp_path) as fleet:
        assert len(list(tmp_path.glob("*.sock"))) == 1000
        for i in (0, 499, 999):
            assert client(fleet.urls[i]).info()["Name"] == fleet.hosts[i].engine_name
    assert not list(tmp_path.glob("*.sock"))


def test_refuses_a_socket_another_simulator_serves(tmp_path):
    with simulated_fleet(hosts=1, containers=1, directory=tmp_path), pytest.raises(SimulatorError, match="another process"):
        asyncio.run(Simulator(tmp_path, hosts=1, containers=1).start())


# --- manage.py simulate --------------------------------------------------------------


def test_manage_py_simulate_serves_registers_and_stops_cleanly(transactional_db, tmp_path):
    sockets = tmp_path / "sockets"
    cmd = [sys.executable, "manage.py", "simulate", "--hosts", "3", "--containers", "6", "--register", "--dir", str(sockets), "--seed", "5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=process_env(tmp_path / "var"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: DockerHost.objects.filter(labels__simulated="true").count() == 3 or proc.poll() is not None, timeout=60, what="three registered hosts")
        hosts = list(DockerHost.objects.order_by("name"))
        assert [(h.name, h.url) for h in hosts] == [(f"sim-{i:04d}", f"unix://{sockets}/sim-{i:04d}.sock") for i in (1, 2, 3)]
        # Polled through the normal pipeline, like any engine.
        run = hosts[0].poll()
        hosts[0].refresh_from_db()
        assert (run.status, hosts[0].last_status) == ("ok", "ok")
        assert hosts[0].snapshot.snapshot().engine.name.endswith("-0001")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "Registered 3 new host(s)" in output and "Simulator stopped" in output
    assert not list(sockets.glob("*.sock"))


def test_register_adds_each_simulated_host_once(db):
    with simulated_fleet(hosts=2, containers=1) as fleet:
        assert register_simulated(fleet) == 2
        assert register_simulated(fleet) == 0
    assert list(DockerHost.objects.values_list("name", "labels")) == [("sim-0001", {"simulated": "true"}), ("sim-0002", {"simulated": "true"})]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "0"], "at least 1"),
        (["--hosts", "1", "--interval", "0"], "above 0"),
        (["--hosts", "1", "--dir", "/tmp/" + "d" * 120], "too long for a unix socket"),
    ],
)
def test_simulate_refuses_bad_input_clearly(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("simulate", *args, stdout=io.StringIO())
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_stopping_the_simulator_ends_open_event_streams_and_removes_its_sockets(tmp_path):
    ended = threading.Event()
    with simulated_fleet(hosts=2, containers=2, directory=tmp_path) as fleet:
        stream = client(fleet.urls[0]).events(decode=True)
        threading.Thread(target=lambda: (list(stream), ended.set()), daemon=True).start()
        fleet.churn(0, 1)
    assert ended.wait(10)
    assert not list(tmp_path.iterdir())


def test_the_churn_loop_changes_every_host_with_a_rate_of_one():
    with simulated_fleet(hosts=3, containers=5, seed=9, churn=1, interval=0.2) as fleet:
        wait_for(lambda: all(fleet.call(lambda h=h: h.changes) >= 1 for h in fleet.hosts), timeout=20, what="a churn round on every host")
        assert all(any(e["Type"] == "container" for e in fleet.events(i)) for i in range(3))
