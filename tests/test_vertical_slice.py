"""The walking skeleton, end to end: register a host, a Celery worker polls it over
the real engine, the finding is stored, and the pages and the CLI show it."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from posture.models import DockerHost, Finding, PollStatus
from posture.tasks import poll_host

from .waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_host_network_container_becomes_a_cis_5_10_finding_on_the_pages(engine, celery_worker, client, admin):
    engine.container("edge-proxy", network_mode="host")
    call_command("hosts", "add", "edge-1", engine.url, stdout=io.StringIO())
    host = DockerHost.objects.get(name="edge-1")

    poll_host.delay(host.pk)
    wait_for(lambda: host.polls.filter(status=PollStatus.OK).exists(), what="the worker's poll")

    finding = Finding.objects.get(host=host, rule_id="host-network")
    assert (finding.cis, finding.subject_name, finding.status) == ("5.10", "edge-proxy", "open")

    client.force_login(admin)
    fleet = client.get("/").content.decode()
    assert "edge-1" in fleet
    host.refresh_from_db()
    assert f'data-score="{host.risk_score}"' in fleet
    page = client.get(f"/hosts/{host.name}/").content.decode()
    assert "Container shares the host&#x27;s network namespace" in page
    assert "edge-proxy" in page


def test_poll_and_findings_commands_for_scripts(engine, db):
    engine.container("edge-proxy", network_mode="host")
    call_command("hosts", "add", "edge-1", engine.url, stdout=io.StringIO())
    out = io.StringIO()
    call_command("poll", "edge-1", stdout=out)
    assert out.getvalue().startswith("edge-1: ok in ")

    out = io.StringIO()
    call_command("findings", "--host", "edge-1", "--format", "json", stdout=out)
    records = json.loads(out.getvalue())
    hostnet = next(r for r in records if r["rule"] == "host-network")
    assert hostnet["cis"] == "5.10" and hostnet["subject"] == "edge-proxy" and hostnet["running"] is True


def test_every_page_requires_login(client, db):
    for url in ("/", "/rules/", "/hosts/any/", "/hosts/new/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
