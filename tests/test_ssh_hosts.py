"""ssh:// hosts through a real sshd on loopback: key auth, host key pinning, timeouts."""

from __future__ import annotations

import io
import socket
import subprocess

import pytest
from django.core.management import call_command

from posture.models import DockerHost, HostStatus, PollStatus
from posture.polling import poll

pytestmark = pytest.mark.django_db


def ssh_host(engine, sshd, key, name="ssh-1") -> DockerHost:
    url = f"ssh://root@127.0.0.1:{sshd.port}{engine.socket}"
    call_command("hosts", "add", name, url, "--ssh-key", str(key), stdout=io.StringIO())
    return DockerHost.objects.get(name=name)


def test_an_engine_is_polled_over_ssh_and_its_host_key_pinned(engine, sshd):
    engine.container("edge", network_mode="host")
    host = ssh_host(engine, sshd, sshd.client_key)
    run = poll(host)
    assert run.status == PollStatus.OK, run.error
    assert host.findings.filter(rule_id="host-network").exists()
    host.refresh_from_db()
    assert "ssh-ed25519" in host.ssh_known_hosts
    assert poll(host).status == PollStatus.OK  # with the pinned key


def test_a_changed_host_key_is_refused(engine, sshd):
    host = ssh_host(engine, sshd, sshd.client_key)
    DockerHost.objects.filter(pk=host.pk).update(
        ssh_known_hosts=f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN1cnByaXNlLXRoaXMtaXMtbm90LXRoZS1rZXkxMjM0\n"
    )
    host.refresh_from_db()
    run = poll(host)
    assert run.status == PollStatus.FAILED and "ssh to" in run.error


def test_a_wrong_key_is_refused_clearly(engine, sshd, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    run = poll(ssh_host(engine, sshd, tmp_path / "stranger"))
    assert run.status == PollStatus.FAILED and not run.retryable
    assert "Permission denied" in run.error


def test_an_ssh_host_that_never_answers_times_out(db, settings, tmp_path, sshd):
    settings.ENGINE_TIMEOUT = 2
    # A listener that accepts and says nothing: ssh waits for its banner.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        port = mute.getsockname()[1]
        host = DockerHost.objects.create(name="mute", url=f"ssh://root@127.0.0.1:{port}", ssh_key=sshd.client_key.read_text())
        run = poll(host)
    host.refresh_from_db()
    assert run.status == PollStatus.FAILED and host.last_status == HostStatus.UNREACHABLE


def test_test_connection_does_not_pin_the_host_key_of_an_unsaved_form(engine, sshd, client, admin):
    host = ssh_host(engine, sshd, sshd.client_key)
    assert host.ssh_known_hosts == ""
    client.force_login(admin)
    form = {"name": host.name, "url": host.url, "poll_interval": 300, "enabled": "on", "labels_text": ""}
    response = client.post(f"/hosts/test/?host={host.name}", form)
    assert "Connected" in response.content.decode()
    host.refresh_from_db()
    assert host.ssh_known_hosts == ""  # the form was never saved: nothing is trusted yet
