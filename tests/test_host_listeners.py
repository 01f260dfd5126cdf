"""Host listeners end to end: real engines, a real sshd, real listening sockets the test opens.

Reachability is judged from configuration only: the test opens listeners on the host,
never sends traffic to a container or bridge address.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
from collections.abc import Iterator

import pytest
from django.core.management import call_command

from posture.collector import hostio
from posture.collector.target import EngineTarget, parse_engine_url
from posture.models import DockerHost, FindingStatus, PollStatus
from posture.polling import poll

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def listening(address: str) -> Iterator[int]:
    """A TCP listener on ``address`` and a free port, open for the block."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, 0))
        sock.listen()
        yield sock.getsockname()[1]


def findings(host: DockerHost, rule_id: str, status: str = FindingStatus.OPEN) -> dict[str, object]:
    return {f"{f.subject_name}#{f.item_key}": f for f in host.findings.filter(rule_id=rule_id, status=status)}


def listing(name: str) -> dict[str, object]:
    out = io.StringIO()
    call_command("hosts", "list", "--format", "json", stdout=out)
    return next(row for row in json.loads(out.getvalue()) if row["name"] == name)


def test_a_unix_host_reads_this_machines_listeners_and_findings_resolve_when_they_go(engine, make_host):
    engine.container("edge", network_mode="host")
    engine.container("app")
    host = make_host("local", engine, host_listeners=True)
    with listening("127.0.0.1") as private, listening("0.0.0.0") as public:
        run = poll(host)
        assert run.status == PollStatus.OK, run.error
        reach = findings(host, "host-network-reaches-listener")
        loopback = reach[f"edge#tcp/127.0.0.1:{private}"]
        assert loopback.severity == "high" and loopback.evidence["listener"] == f"127.0.0.1:{private}"
        assert loopback.evidence["process"].startswith(("python", "pytest"))  # the worker runs as root here
        assert reach[f"edge#tcp/0.0.0.0:{public}"].severity == "low"
        assert f"edge#tcp/0.0.0.0:{private}" not in reach
        bridged = findings(host, "bridge-reaches-host-listener")
        spec = bridged[f"app#tcp/0.0.0.0:{public}"]
        gateway = engine.client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
        assert spec.evidence["reached_at"] == [f"{gateway}:{public} (bridge)"]
        assert f"app#tcp/127.0.0.1:{private}" not in bridged  # loopback is not reachable from a bridge
    assert poll(host).status == PollStatus.OK
    gone = findings(host, "host-network-reaches-listener", FindingStatus.RESOLVED)
    assert {f"edge#tcp/127.0.0.1:{private}", f"edge#tcp/0.0.0.0:{public}"} <= set(gone)
    assert f"app#tcp/0.0.0.0:{public}" in findings(host, "bridge-reaches-host-listener", FindingStatus.RESOLVED)
    row = listing("local")
    assert row["host_listeners"] is True and row["listeners_error"] == ""


def test_hosts_without_the_option_read_nothing_of_the_host(engine, make_host):
    engine.container("edge", network_mode="host")
    host = make_host("plain", engine)
    with listening("127.0.0.1"):
        assert poll(host).status == PollStatus.OK
    assert host.snapshot.data["host"] is None
    assert not host.findings.filter(rule_id__in=["host-network-reaches-listener", "host-listeners-unread", "firewall-unread"]).exists()
    assert listing("plain") == listing("plain") | {"host_listeners": False, "listeners_error": ""}


def test_a_listener_read_failure_keeps_the_container_findings_and_the_error(engine, make_host, monkeypatch):
    engine.container("edge", network_mode="host")
    # The worker believes it runs elsewhere: this machine's /proc/net is then not the engine host's.
    monkeypatch.setattr(hostio.socket, "gethostname", lambda: "some-other-machine")
    host = make_host("far", engine, host_listeners=True)
    run = poll(host)
    assert run.status == PollStatus.OK
    assert host.findings.filter(rule_id="host-network", status=FindingStatus.OPEN).exists()
    [unread] = host.findings.filter(rule_id="host-listeners-unread")
    assert "this worker on 'some-other-machine'" in unread.evidence["error"]
    assert "listeners cannot be read for this host" in listing("far")["listeners_error"]


def test_an_unexpected_failure_while_reading_the_host_never_fails_the_poll(engine, make_host, monkeypatch):
    engine.container("edge", network_mode="host")

    def broken(target, name):
        raise RuntimeError("boom")

    monkeypatch.setattr(hostio, "read_host", broken)
    host = make_host("broken", engine, host_listeners=True)
    assert poll(host).status == PollStatus.OK
    assert host.findings.filter(rule_id="host-network").exists()
    assert "reading the host failed: boom" in listing("broken")["listeners_error"]


def test_a_tcp_host_says_plainly_that_listeners_cannot_be_read():
    target = EngineTarget(url=parse_engine_url("tcp://192.0.2.1:2376"), host_listeners=True)
    state = hostio.read_host(target, "docker-1")
    assert state.listeners == () and state.listeners_error.startswith("listeners cannot be read for this host")
    assert "ssh://" in state.firewall_error


def test_only_the_fixed_commands_can_be_run_over_ssh(tmp_path):
    session = hostio.SshSession(EngineTarget(url=parse_engine_url("ssh://root@192.0.2.1")), tmp_path)
    with pytest.raises(ValueError, match="not an allowed host command"):
        session.run("ss -Hltnup; rm -rf /")
    assert all(c.split()[0] in ("ss", "tail", "iptables-save", "nft", "sudo") for c in hostio.COMMANDS)


# --- over SSH ---------------------------------------------------------------------------


def test_an_ssh_host_reads_listeners_and_the_firewall_over_ssh(engine, sshd):
    engine.container("edge", network_mode="host")
    engine.container("app")
    url = f"ssh://root@127.0.0.1:{sshd.port}{engine.socket}"
    call_command("hosts", "add", "ssh-host", url, "--ssh-key", str(sshd.client_key), "--host-listeners", stdout=io.StringIO())
    host = DockerHost.objects.get(name="ssh-host")
    assert host.host_listeners
    with listening("127.0.0.1") as private, listening("0.0.0.0") as public:
        run = poll(host)
        assert run.status == PollStatus.OK, run.error
        state = host.snapshot.data["host"]
        assert state["listeners_source"] == "ss -Hltnup" and state["listeners_error"] == ""
        # This machine's own firewall, read over SSH with iptables-save, read-only.
        assert state["firewall_error"] == "" and "iptables-save" in state["firewall"]["source"]
        reach = findings(host, "host-network-reaches-listener")
        spec = reach[f"edge#tcp/127.0.0.1:{private}"]
        assert spec.evidence["listeners_read_with"] == "ss -Hltnup" and spec.evidence["process"].startswith(("python", "pytest"))
        assert f"edge#tcp/127.0.0.1:{sshd.port}" in reach  # the sshd itself: a loopback service too
        assert f"app#tcp/0.0.0.0:{public}" in findings(host, "bridge-reaches-host-listener")
    assert poll(host).status == PollStatus.OK
    assert f"edge#tcp/127.0.0.1:{private}" in findings(host, "host-network-reaches-listener", FindingStatus.RESOLVED)
    assert f"app#tcp/0.0.0.0:{public}" in findings(host, "bridge-reaches-host-listener", FindingStatus.RESOLVED)
    assert listing("ssh-host")["listeners_error"] == ""


def test_the_host_form_turns_host_listeners_on_and_the_host_page_shows_it(client, admin, engine):
    client.force_login(admin)
    response = client.post("/hosts/new/", {"name": "form-host", "url": engine.url, "poll_interval": 60, "enabled": "on", "host_listeners": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    host = DockerHost.objects.get(name="form-host")
    assert host.host_listeners
    assert 'name="host_listeners"' in client.get("/hosts/form-host/edit/").content.decode()
    assert "Host listeners: read at every poll" in client.get("/hosts/form-host/").content.decode()
    poll(host)
    page = client.get("/hosts/form-host/").content.decode()
    assert "found with /proc/net" in page and "firewall not read: firewall rules are read over SSH only" in page
