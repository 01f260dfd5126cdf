"""The pages: roles enforced in views and hidden in templates, constant query counts,
untrusted engine values escaped, strict CSP, throttled logins, deploy checks.

Hosts and findings are rows built by ``tests.factories`` from hand-built snapshots; no
engine is needed here ("Test connection" against real engines is in
``test_connection_on_engine.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from posture.models import AuditEntry, DockerHost, Finding, Report, ReportSchedule
from posture.views.rules import HITS_CACHE_KEY

from . import factories
from .builders import container, port, snapshot
from .pki import CA
from .waiting import wait_for

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def polled(db):
    return factories.polled("web-1", labels={"env": "prod"})


def htmx(client, method, url, data=None):
    return getattr(client, method)(url, data, HTTP_HX_REQUEST="true")


# --- roles ------------------------------------------------------------------------------


def test_a_viewer_reads_everything_and_changes_nothing(client, viewer, polled):
    client.force_login(viewer)
    finding = Finding.objects.filter(host=polled).first()
    for url in ("/", "/rules/", f"/hosts/{polled.name}/", f"/hosts/{polled.name}/findings/{finding.pk}/"):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/hosts/{polled.name}/").content.decode()
    assert "Poll now" not in page and "Edit" not in page
    assert "Accept risk" not in client.get(f"/hosts/{polled.name}/findings/{finding.pk}/").content.decode()
    assert client.post(f"/hosts/{polled.name}/poll/").status_code == 403
    assert client.post(f"/hosts/{polled.name}/findings/{finding.pk}/accept/", {"justification": "x" * 20, "expires_on": "2099-01-01"}).status_code == 403
    assert client.get("/hosts/new/").status_code == 403
    assert client.post(f"/hosts/{polled.name}/delete/").status_code == 403
    assert DockerHost.objects.filter(pk=polled.pk).exists()


def test_an_outsider_without_a_role_sees_nothing(client, outsider, polled):
    client.force_login(outsider)
    for url in ("/", "/rules/", f"/hosts/{polled.name}/"):
        response = client.get(url)
        assert response.status_code == 403 and "not allowed" in response.content.decode()


def test_an_analyst_polls_and_accepts_risk(client, analyst, polled, settings):
    client.force_login(analyst)
    page = client.get(f"/hosts/{polled.name}/").content.decode()
    assert "Poll now" in page and "Edit" not in page
    response = htmx(client, "post", f"/hosts/{polled.name}/poll/")
    assert response.status_code == 200 and "Polling web-1" in response.content.decode()

    finding = Finding.objects.get(host=polled, rule_id="port-sensitive-service-exposed")
    before = DockerHost.objects.get(pk=polled.pk).risk_score
    day = (timezone.now() + timedelta(days=30)).date().isoformat()
    response = client.post(f"/hosts/{polled.name}/findings/{finding.pk}/accept/", {"justification": "Only reachable via the VPN; SEC-1", "expires_on": day})
    assert response.status_code == 302
    finding.refresh_from_db()
    assert finding.status == "accepted" and DockerHost.objects.get(pk=polled.pk).risk_score < before
    assert AuditEntry.objects.filter(action="finding.accept", actor=analyst).exists()


def test_accepting_risk_validates_the_form(client, analyst, polled):
    client.force_login(analyst)
    finding = Finding.objects.filter(host=polled).first()
    response = htmx(client, "post", f"/hosts/{polled.name}/findings/{finding.pk}/accept/", {"justification": "short", "expires_on": "2001-01-01"})
    body = response.content.decode()
    assert response.status_code == 400
    assert "Ensure this value has at least 10 characters" in body and "Pick a day after today" in body
    finding.refresh_from_db()
    assert finding.status == "open"


def test_an_admin_registers_a_host_with_write_only_credentials(client, admin, tmp_path):
    client.force_login(admin)
    ca = CA(tmp_path / "pki")
    client_cert = ca.issue("client", server=False)
    response = client.post(
        "/hosts/new/",
        {
            "name": "tls-2",
            "url": "tcp://127.0.0.1:23999",
            "poll_interval": "300",
            "enabled": "on",
            "labels_text": "env=prod, team=core",
            "tls_ca_file": SimpleUploadedFile("ca.pem", ca.path.read_bytes()),
            "tls_cert_file": SimpleUploadedFile("cert.pem", client_cert.cert.read_bytes()),
            "tls_key_file": SimpleUploadedFile("key.pem", client_cert.key.read_bytes()),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    host = DockerHost.objects.get(name="tls-2")
    assert host.labels == {"env": "prod", "team": "core"} and "PRIVATE KEY" in host.tls_key
    edit = client.get("/hosts/tls-2/edit/").content.decode()
    assert "PRIVATE KEY" not in edit and "BEGIN CERTIFICATE" not in edit
    assert "Stored (never shown again): CA certificate (PEM), client certificate (PEM), client key (PEM)" in edit
    assert AuditEntry.objects.filter(action="host.add", actor=admin, target="tls-2").exists()


def test_the_host_form_explains_bad_input(client, admin):
    client.force_login(admin)
    response = client.post(
        "/hosts/new/",
        {
            "name": "x",
            "url": "tcp://169.254.169.254:2375",
            "poll_interval": "5",
            "labels_text": "oops",
            "tls_key_file": SimpleUploadedFile("k.pem", b"not a key"),
        },
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "link-local" in body and "KEY=VALUE" in body and "PEM" in body and "greater than or equal to 10" in body
    assert not DockerHost.objects.exists()


def test_test_connection_reports_failure_and_saves_nothing(client, admin, tmp_path):
    client.force_login(admin)
    bad = htmx(client, "post", "/hosts/test/", {"name": "probe", "url": f"unix://{tmp_path}/none.sock", "poll_interval": "300"}).content.decode()
    assert "cannot reach" in bad and "no such file or directory" in bad
    assert not DockerHost.objects.exists()


# --- what the pages show -------------------------------------------------------------------


def test_engine_values_are_escaped(client, viewer, polled):
    client.force_login(viewer)
    finding = Finding.objects.get(host=polled, rule_id="port-sensitive-service-exposed")
    Finding.objects.filter(pk=finding.pk).update(subject_name="<img src=x onerror=alert(1)>")
    for url in (f"/hosts/{polled.name}/", f"/hosts/{polled.name}/findings/{finding.pk}/"):
        body = client.get(url).content.decode()
        assert "<img src=x" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body


def test_fleet_filters_in_place_with_htmx(client, viewer):
    factories.host("prod-a", labels={"env": "prod"})
    factories.host("test-b", labels={"env": "test"})
    client.force_login(viewer)
    part = htmx(client, "get", "/", data={"label": "env=prod"}).content.decode()
    assert "prod-a" in part and "test-b" not in part and "<html" not in part
    assert "test-b" in htmx(client, "get", "/", data={"q": "test"}).content.decode()
    full = client.get("/?label=env=test").content.decode()
    assert "<html" in full and "test-b" in full and "prod-a" not in full


def test_empty_states_say_what_to_do(client, admin, viewer):
    client.force_login(admin)
    assert "Register your first Docker host" in client.get("/").content.decode()
    client.force_login(viewer)
    assert "Ask an admin to register one" in client.get("/").content.decode()


def test_fleet_query_count_does_not_grow_with_hosts(client, viewer):
    client.force_login(viewer)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/").status_code == 200
        return len(ctx.captured_queries)

    factories.polled("h0")
    few = count()
    factories.polled_hosts(f"h{i}" for i in range(1, 6))
    assert count() == few


def test_host_page_query_count_does_not_grow_with_containers(client, viewer):
    client.force_login(viewer)
    factories.polled("few", snapshot([container("c0", ports=[port(80, 18900)])]))
    factories.polled("many", snapshot([container(f"c{i}", ports=[port(80, 18900 + i)], cap_add=("NET_RAW",)) for i in range(6)]))

    def count(name: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            page = client.get(f"/hosts/{name}/")
        assert page.status_code == 200 and "c0" in page.content.decode()
        return len(ctx.captured_queries)

    assert count("many") == count("few")


# --- hardening ---------------------------------------------------------------------------------


def test_strict_content_security_policy(client, viewer, polled):
    client.force_login(viewer)
    response = client.get(f"/hosts/{polled.name}/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["Cache-Control"] == "no-store"
    body = response.content.decode()
    assert '"allowEval": false' in body and '"allowScriptTags": false' in body and '"includeIndicatorStyles": false' in body


def test_templates_carry_no_inline_script_or_style():
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", text), template
        assert "|safe" not in text and "autoescape off" not in text, template


def test_deploy_checks_pass_under_production_settings(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_DEBUG": "false",
        "POSTURE_HTTPS": "true",
        "SECRET_KEY": "x" * 20 + "production-secret-key-that-is-long-and-random-0123456789",
        "POSTURE_VAR_DIR": str(tmp_path),
        "DJANGO_ALLOWED_HOSTS": "posture.example.com",
    }
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_pages_use_the_error_template(client, viewer):
    client.force_login(viewer)
    response = client.get("/hosts/does-not-exist/")
    assert response.status_code == 404 and "Nothing here" in response.content.decode()


# --- reports -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_analyst_generates_a_report_a_viewer_downloads_it(client, analyst, viewer, celery_worker):
    factories.polled("web-9")
    client.force_login(viewer)
    assert client.post("/reports/generate/", {"days": "7"}).status_code == 403
    assert "Generate report" not in client.get("/reports/").content.decode()
    client.force_login(analyst)
    assert client.post("/reports/generate/", {"days": "7", "labels_text": ""}).status_code == 302
    report = wait_for(lambda: Report.objects.filter(status="ready").first(), timeout=60, what="the report")
    client.force_login(viewer)
    listing = client.get("/reports/").content.decode()
    assert f"/reports/{report.pk}/download/" in listing
    response = client.get(f"/reports/{report.pk}/download/")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content)[:4] == b"%PDF"


def test_report_forms_explain_bad_input(client, analyst):
    client.force_login(analyst)
    bad = client.post(
        "/reports/schedules/new/", {"name": "w", "frequency": "weekly", "weekday": "9", "day_of_month": "1", "at": "06:00", "recipients": "not-an-address"}
    )
    body = bad.content.decode()
    assert bad.status_code == 400 and "is not an e-mail address" in body and "less than or equal to 6" in body
    assert client.post("/reports/generate/", {"days": "0"}).status_code == 400


def test_poll_status_tolerates_a_bad_parameter(client, viewer, polled):
    client.force_login(viewer)
    assert client.get(f"/hosts/{polled.name}/poll/status/?after=abc", HTTP_HX_REQUEST="true").status_code == 200


def test_rules_and_reports_pages_query_counts_do_not_grow(client, viewer):
    client.force_login(viewer)

    def count(url: str) -> int:
        cache.delete(HITS_CACHE_KEY)  # the rules page counting, not reading its last count
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    factories.polled("h0", snapshot([container("quiet")]))
    factories.report("r0")
    few = {url: count(url) for url in ("/rules/", "/reports/")}
    factories.polled_hosts(f"h{i}" for i in range(1, 5))
    for i in range(1, 5):
        factories.report(f"r{i}", created_by=viewer, schedule=ReportSchedule.objects.create(name=f"s{i}"))
    assert {url: count(url) for url in few} == few


def test_a_finished_poll_refreshes_every_section_in_one_answer(client, analyst, polled):
    client.force_login(analyst)
    page = client.get(f"/hosts/{polled.name}/").content.decode()
    assert "hx-swap-oob" not in page
    done = htmx(client, "get", f"/hosts/{polled.name}/poll/status/", {"after": "0"}).content.decode()
    assert "Poll finished" in done
    for section in ("summary", "findings", "changes", "containers", "networks", "polls"):
        assert f'id="{section}"' in done and done.count('hx-swap-oob="true"') == 6, section
    waiting = htmx(client, "get", f"/hosts/{polled.name}/poll/status/", {"after": "999999"}).content.decode()
    assert "Polling web-1" in waiting and "hx-swap-oob" not in waiting


def test_fleet_filters_stale_hosts_apart_from_healthy_ones(client, viewer):
    factories.host("fresh", poll_interval=60)
    factories.host("stale", poll_interval=60, polled_at=timezone.now() - timedelta(seconds=181))
    client.force_login(viewer)
    only_stale = htmx(client, "get", "/", {"status": "stale"}).content.decode()
    only_ok = htmx(client, "get", "/", {"status": "ok"}).content.decode()
    assert ">stale</a>" in only_stale and ">fresh</a>" not in only_stale and "⚠ Stale" in only_stale
    assert ">fresh</a>" in only_ok and ">stale</a>" not in only_ok


def test_analysts_pause_schedules_and_admins_remove_them(client, analyst, admin, viewer):
    schedule = ReportSchedule.objects.create(name="weekly", recipients="sec@example.test")
    client.force_login(viewer)
    assert client.post(f"/reports/schedules/{schedule.pk}/toggle/").status_code == 403
    client.force_login(analyst)
    assert client.post(f"/reports/schedules/{schedule.pk}/toggle/").status_code == 302
    assert not ReportSchedule.objects.get(pk=schedule.pk).enabled
    assert "Remove" not in client.get("/reports/").content.decode()
    assert client.post(f"/reports/schedules/{schedule.pk}/delete/").status_code == 403
    client.force_login(admin)
    assert client.post(f"/reports/schedules/{schedule.pk}/delete/").status_code == 302
    assert not ReportSchedule.objects.exists()
    assert list(AuditEntry.objects.order_by("at").values_list("action", flat=True)) == ["schedule.disable", "schedule.delete"]
