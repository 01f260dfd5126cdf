""" "Test connection" on the host form against real engines: a plain engine answers, and
while editing a TLS host the stored credentials are used."""

from __future__ import annotations

import pytest

from posture.models import DockerHost

pytestmark = pytest.mark.django_db


def test_test_connection_reports_success_without_saving(client, admin, engine):
    client.force_login(admin)
    ok = client.post("/hosts/test/", {"name": "probe", "url": engine.url, "poll_interval": "300"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Connected: Docker" in ok
    assert not DockerHost.objects.exists()


def test_test_connection_while_editing_uses_the_stored_credentials(client, admin, tls_engine):
    client_cert = tls_engine.ca.issue("edit-client", server=False)
    host = DockerHost.objects.create(
        name="tls-edit",
        url=tls_engine.tcp_url,
        tls_ca=tls_engine.ca.path.read_text(),
        tls_cert=client_cert.cert.read_text(),
        tls_key=client_cert.key.read_text(),
    )
    client.force_login(admin)
    form = {"name": host.name, "url": host.url, "poll_interval": "300", "enabled": "on"}
    body = client.post(f"/hosts/test/?host={host.name}", form, HTTP_HX_REQUEST="true").content.decode()
    assert "Connected: Docker" in body
    assert "Connected" not in client.post("/hosts/test/", form, HTTP_HX_REQUEST="true").content.decode()
