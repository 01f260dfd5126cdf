"""tcp:// with TLS client certificates against a real engine; credentials encrypted at rest."""

from __future__ import annotations

import io
import stat

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from posture.models import DockerHost, HostStatus, PollStatus
from posture.polling import credentials, poll

from .pki import CA

pytestmark = pytest.mark.django_db


def tls_host(engine, client=None, ca=None, name="tls-1", url="") -> DockerHost:
    opts = ["--tls-ca", str(ca or engine.ca.path)]
    if client:
        opts += ["--tls-cert", str(client.cert), "--tls-key", str(client.key)]
    call_command("hosts", "add", name, url or engine.tcp_url, *opts, stdout=io.StringIO())
    return DockerHost.objects.get(name=name)


@pytest.fixture
def ca(tmp_path) -> CA:
    """A CA of our own, for tests of what happens to credentials before any engine is asked."""
    return CA(tmp_path / "pki")


def test_a_tls_engine_with_a_client_certificate_is_polled(tls_engine):
    tls_engine.container("edge", network_mode="host")
    host = tls_host(tls_engine, tls_engine.ca.issue("posture-client", server=False))
    run = poll(host)
    assert run.status == PollStatus.OK, run.error
    rules = set(host.findings.values_list("rule_id", flat=True))
    assert "host-network" in rules
    assert not rules & {"daemon-tcp-no-tls", "daemon-tls-no-client-verify"}


def test_without_a_client_certificate_the_engine_refuses(tls_engine):
    host = tls_host(tls_engine)
    run = poll(host)
    host.refresh_from_db()
    assert run.status == PollStatus.FAILED and not run.retryable
    assert host.last_status == HostStatus.UNREACHABLE
    assert host.last_error.startswith(f"TLS handshake with {tls_engine.tcp_url} failed")


def test_an_expired_client_certificate_is_named(tls_engine):
    expired = tls_engine.ca.issue("old-client", server=False, days=-1, not_before_days=-30)
    run = poll(tls_host(tls_engine, expired))
    assert run.status == PollStatus.FAILED
    assert "client certificate expired on" in run.error and "upload a renewed one" in run.error


def test_the_server_is_verified_against_the_hosts_own_ca(tls_engine, tmp_path):
    other = CA(tmp_path / "other", name="Some Other CA")
    run = poll(tls_host(tls_engine, other.issue("client", server=False), ca=other.path))
    assert run.status == PollStatus.FAILED
    assert "certificate verify failed" in run.error


def test_credentials_are_ciphertext_in_the_database(ca):
    host = tls_host(None, ca.issue("posture-client", server=False), ca=ca.path, url="tcp://127.0.0.1:23998")
    with connection.cursor() as cursor:
        cursor.execute("SELECT tls_ca, tls_cert, tls_key FROM posture_dockerhost WHERE id = %s", [host.pk])
        stored = cursor.fetchone()
    for value in stored:
        assert value and "BEGIN" not in value and "PRIVATE" not in value
    assert "PRIVATE KEY" in DockerHost.objects.get(pk=host.pk).tls_key


def test_credentials_are_decrypted_into_private_files_for_the_poll_only(ca):
    host = tls_host(None, ca.issue("posture-client", server=False), ca=ca.path, url="tcp://127.0.0.1:23998")
    with credentials(host) as creds:
        target = creds.target
        workdir = target.tls_key.parent
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert stat.S_IMODE(target.tls_key.stat().st_mode) == 0o600
        assert "PRIVATE KEY" in target.tls_key.read_text()
    assert not workdir.exists()


def test_keys_rotate_to_a_new_key(tls_engine, settings):
    old = settings.POSTURE_CREDENTIALS_KEYS[0]
    host = tls_host(tls_engine, tls_engine.ca.issue("posture-client", server=False))
    new = Fernet.generate_key().decode()
    with override_settings(POSTURE_CREDENTIALS_KEYS=[new, old]):
        call_command("hosts", "rotate-keys", stdout=io.StringIO())
    with override_settings(POSTURE_CREDENTIALS_KEYS=[new]):
        assert "PRIVATE KEY" in DockerHost.objects.get(pk=host.pk).tls_key
        assert poll(host).status == PollStatus.OK
