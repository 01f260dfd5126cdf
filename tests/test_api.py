"""The JSON API: bearer tokens only, the pages' roles per endpoint (a matrix), every write
audited, constant query counts, throttling, and a schema that validates."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.throttling import UserRateThrottle

from posture.middleware import CSP
from posture.models import ApiToken, AuditEntry, DockerHost, Finding, Report, RiskException
from posture.polling import poll

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()  # throttle counters live in the cache


@pytest.fixture
def polled(engine, make_host):
    engine.container("caps", cap_add=["NET_ADMIN"])
    engine.container("edge", network_mode="host")
    host = make_host("web-1", engine, labels={"env": "prod"})
    poll(host)
    return host


@pytest.fixture
def ready_report(admin):
    report = Report.request_now(by=admin, labels={}, days=7)
    report.store(b"%PDF-1.4\n% a stand-in\n", pages=1, hosts=1)
    return report


def bearer(user, **kwargs) -> dict[str, str]:
    _token, secret = ApiToken.issue(user, actor=None, **kwargs)
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def call(client, method, url, headers, data=None):
    if method in ("post", "patch"):
        return getattr(client, method)(url, json.dumps(data or {}), content_type="application/json", **headers)
    return getattr(client, method)(url, **headers)


# --- who may do what -----------------------------------------------------------------

VIEWER, ANALYST, ADMIN = 1, 2, 3
LEVEL = {"outsider": 0, "viewer": VIEWER, "analyst": ANALYST, "admin": ADMIN}


def endpoints(host: DockerHost, finding: Finding, report: Report) -> list[tuple[str, str, dict | None, int, int]]:
    """(method, url, body, least role, status when allowed), reads first, removal last."""
    until = (timezone.now() + timedelta(days=30)).isoformat()
    return [
        ("get", "/api/hosts/", None, VIEWER, 200),
        ("get", f"/api/hosts/{host.name}/", None, VIEWER, 200),
        ("get", f"/api/hosts/{host.name}/risk/", None, VIEWER, 200),
        ("get", "/api/findings/", None, VIEWER, 200),
        ("get", f"/api/findings/{finding.pk}/", None, VIEWER, 200),
        ("get", "/api/exceptions/", None, VIEWER, 200),
        ("get", "/api/reports/", None, VIEWER, 200),
        ("get", f"/api/reports/{report.pk}/", None, VIEWER, 200),
        ("get", f"/api/reports/{report.pk}/download/", None, VIEWER, 200),
        ("post", f"/api/hosts/{host.name}/poll/", None, ANALYST, 202),
        ("post", "/api/acceptances/", {"finding": finding.pk, "justification": "compensating firewall rule", "expires_at": until}, ANALYST, 201),
        (
            "post",
            "/api/exceptions/",
            {"rule_id": "host-network", "labels": {"env": "lab"}, "justification": "lab hosts are isolated", "expires_at": until},
            ANALYST,
            201,
        ),
        ("post", "/api/reports/", {"labels": {"env": "prod"}, "days": 7}, ANALYST, 202),
        ("post", "/api/hosts/", {"name": "db-1", "url": "unix:///run/db-1/docker.sock", "labels": {"env": "prod"}}, ADMIN, 201),
        ("patch", "/api/hosts/db-1/", {"poll_interval": 600}, ADMIN, 200),
        ("delete", "/api/hosts/db-1/", None, ADMIN, 204),
    ]


@pytest.mark.parametrize("role", ["outsider", "viewer", "analyst", "admin"])
def test_every_endpoint_allows_exactly_the_roles_the_pages_allow(client, request, role, polled, ready_report):
    user = request.getfixturevalue(role)
    headers = bearer(user)
    finding = Finding.objects.filter(host=polled).exclude(severity="info").first()
    DockerHost.objects.create(name="db-1", url="unix:///run/db-1/docker.sock") if LEVEL[role] < ADMIN else None
    wrong = []
    for method, url, body, least, allowed in endpoints(polled, finding, ready_report):
        audited = AuditEntry.objects.count()
        response = call(client, method, url, headers, body)
        expected = allowed if LEVEL[role] >= least else 403
        if response.status_code != expected:
            wrong.append(f"{method.upper()} {url}: {response.status_code} (wanted {expected}) {response.content[:200]!r}")
        elif method != "get":
            # Every write is audited, by the token's user; a refused one writes nothing.
            entries = AuditEntry.objects.count() - audited
            if (entries == 1) != (expected < 400) or (entries and AuditEntry.objects.first().actor != user):
                wrong.append(f"{method.upper()} {url}: {entries} audit entries")
    assert not wrong, "\n".join(wrong)


def test_requests_without_a_valid_token_are_refused(client, viewer):
    _token, secret = ApiToken.issue(viewer, actor=None)
    expired, expired_secret = ApiToken.issue(viewer, actor=None, days=1)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, revoked_secret = ApiToken.issue(viewer, actor=None)
    revoked.revoke(actor=viewer)
    for header in ["", "Bearer", "Bearer pst_nonsense", f"Token {secret}", f"Bearer {expired_secret}", f"Bearer {revoked_secret}", f"Bearer {secret}x"]:
        response = client.get("/api/hosts/", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"].startswith("Bearer")
    # A signed-in browser session is not an API credential.
    client.force_login(viewer)
    assert client.get("/api/hosts/").status_code == 401
    viewer.is_active = False
    viewer.save()
    assert client.get("/api/hosts/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_tokens_are_stored_hashed_and_record_their_last_use(client, viewer):
    token, secret = ApiToken.issue(viewer, actor=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM posture_apitoken")
        row = cursor.fetchone()
    assert secret not in " ".join(map(str, row)) and secret.split("_", 2)[2] not in " ".join(map(str, row))
    assert token.prefix in secret and token.display.startswith(f"pst_{token.prefix}")
    assert client.get("/api/hosts/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_the_api_is_throttled_per_user(client, viewer, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "rate", "3/min", raising=False)
    headers = bearer(viewer)
    statuses = [client.get("/api/hosts/", **headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


# --- what the endpoints say ------------------------------------------------------------


def test_hosts_register_validates_and_never_shows_credentials(client, admin):
    headers = bearer(admin)
    bad = call(client, "post", "/api/hosts/", headers, {"name": "plain", "url": "tcp://10.0.0.5:2375"})
    assert bad.status_code == 400 and "insecure" in bad.json()["url"][0]
    bad_label = call(client, "post", "/api/hosts/", headers, {"name": "x", "url": "unix:///x.sock", "labels": {"bad key!": "v"}})
    assert bad_label.status_code == 400 and "labels" in bad_label.json()
    assert not DockerHost.objects.exists()
    created = call(client, "post", "/api/hosts/", headers, {"name": "ssh-1", "url": "ssh://ops@127.0.0.1", "ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["credentials"] == ["ssh_key"] and "ssh_key" not in body and "BEGIN" not in created.content.decode()
    assert DockerHost.objects.get(name="ssh-1").ssh_key.startswith("-----BEGIN")


def test_findings_filter_by_host_rule_severity_status_and_label(client, viewer, polled, engine, make_host):
    other = make_host("dev-1", engine, labels={"env": "dev"})
    poll(other)
    headers = bearer(viewer)

    def ids(query: str) -> set[int]:
        response = client.get(f"/api/findings/?{query}&page_size=500", **headers)
        assert response.status_code == 200, response.content
        return {f["id"] for f in response.json()["results"]}

    assert ids("host=web-1") == set(Finding.objects.filter(host=polled, status="open").values_list("pk", flat=True))
    assert ids("label=env=dev") == set(Finding.objects.filter(host=other, status="open").values_list("pk", flat=True))
    assert ids("rule=host-network") == set(Finding.objects.filter(rule_id="host-network").values_list("pk", flat=True))
    assert ids("severity=high") == set(Finding.objects.filter(severity__in=["high", "critical"], status="open").values_list("pk", flat=True))
    assert ids("status=resolved") == set()
    assert ids("status=all") == set(Finding.objects.values_list("pk", flat=True))
    for bad in ["severity=awful", "status=maybe", "label=novalue"]:
        assert client.get(f"/api/findings/?{bad}", **headers).status_code == 400, bad


def test_a_finding_comes_with_its_events_and_accepting_it_goes_through_the_model(client, analyst, polled):
    headers = bearer(analyst)
    finding = Finding.objects.filter(host=polled, rule_id="host-network").get()
    until = (timezone.now() + timedelta(days=10)).isoformat()
    created = call(client, "post", "/api/acceptances/", headers, {"finding": finding.pk, "justification": "isolated lab host", "expires_at": until})
    assert created.status_code == 201, created.content
    detail = client.get(f"/api/findings/{finding.pk}/", **headers).json()
    assert detail["status"] == "accepted"
    assert [e["kind"] for e in detail["events"]] == ["opened", "accepted"]
    assert detail["events"][1]["actor"] == analyst.username
    too_long = (timezone.now() + timedelta(days=400)).isoformat()
    refused = call(client, "post", "/api/acceptances/", headers, {"finding": finding.pk, "justification": "forever and ever", "expires_at": too_long})
    assert refused.status_code == 400 and RiskException.objects.count() == 1
    assert created.json()["finding"] == finding.pk and created.json()["covered_findings"] == 1


def test_an_exception_is_created_previewed_listed_and_removed_through_the_api(client, analyst, viewer, polled):
    headers = bearer(analyst)
    until = (timezone.now() + timedelta(days=30)).isoformat()
    body = {"rule_id": "host-network", "host": polled.name, "justification": "edge proxy by design, SEC-12", "expires_at": until}
    created = call(client, "post", "/api/exceptions/", headers, body)
    assert created.status_code == 201, created.content
    exception = created.json()
    assert exception["covered_findings"] == 1 and exception["owner"] == analyst.username and exception["status"] == "active"
    assert Finding.objects.get(host=polled, rule_id="host-network").status == "accepted"
    listed = client.get("/api/exceptions/", **bearer(viewer)).json()
    assert [e["id"] for e in listed["results"]] == [exception["id"]]
    assert call(client, "delete", f"/api/exceptions/{exception['id']}/", bearer(viewer), None).status_code == 403
    assert call(client, "delete", f"/api/exceptions/{exception['id']}/", headers, None).status_code == 204
    assert Finding.objects.get(host=polled, rule_id="host-network").status == "open"
    bad = call(client, "post", "/api/exceptions/", headers, {**body, "rule_id": "", "labels": {"env__regex": "("}})
    assert bad.status_code == 400


def test_risk_history_and_report_download(client, viewer, polled, ready_report):
    headers = bearer(viewer)
    risk = client.get(f"/api/hosts/{polled.name}/risk/", **headers).json()
    assert risk["count"] == 1 and risk["results"][0]["score"] == polled.risk_score
    pdf = client.get(f"/api/reports/{ready_report.pk}/download/", **headers)
    assert pdf["Content-Type"] == "application/pdf" and b"".join(pdf.streaming_content).startswith(b"%PDF")
    listed = client.get("/api/reports/", **headers).json()["results"][0]
    assert listed["download"] == f"/api/reports/{ready_report.pk}/download/"


# --- constant query counts ---------------------------------------------------------------


def queries(client, url: str, headers: dict[str, str]) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code == 200, response.content
    return len(ctx.captured_queries)


def test_list_and_detail_query_counts_do_not_grow_with_rows(client, analyst, engine, make_host):
    headers = bearer(analyst)
    host = make_host("grow", engine)
    engine.container("edge", network_mode="host")
    finding = None

    def grow(i: int) -> None:
        nonlocal finding
        make_host(f"more-{i}", engine, labels={"n": str(i)})
        engine.container(f"pid-{i}", pid_mode="host", ipc_mode="host")
        poll(host)
        finding = Finding.objects.filter(host=host, rule_id="host-network").get()
        finding.accept(by=analyst, until=timezone.now() + timedelta(days=i + 1), justification="reviewed again this week")
        Report.request_now(by=analyst, labels={}, days=1)

    grow(0)
    urls = ["/api/hosts/", "/api/findings/?status=all", "/api/exceptions/", "/api/reports/", f"/api/findings/{finding.pk}/", "/api/hosts/grow/risk/"]
    client.get("/api/hosts/", **headers)  # last_used_at written once, outside the measurements
    before = {url: queries(client, url, headers) for url in urls}
    for i in range(1, 6):
        grow(i)
    after = {url: queries(client, url, headers) for url in urls}
    assert after == before
    assert max(after.values()) <= 8


# --- schema and docs ---------------------------------------------------------------------


def test_the_schema_validates_and_documents_bearer_auth(client, viewer):
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    schema = json.loads(out.getvalue())
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert {"/api/hosts/", "/api/findings/", "/api/exceptions/", "/api/acceptances/", "/api/reports/", "/api/hosts/{name}/risk/"} <= set(schema["paths"])
    served = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json", **bearer(viewer))
    assert served.status_code == 200 and json.loads(served.content)["paths"].keys() == schema["paths"].keys()


def test_the_docs_page_works_under_the_strict_csp(client, viewer):
    assert client.get("/api/docs/").status_code == 302  # to the login page
    client.force_login(viewer)
    page = client.get("/api/docs/")
    assert page.status_code == 200 and page["Content-Security-Policy"] == CSP
    html = page.content.decode()
    assert "<style" not in html and "<script>" not in html and "static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content and b"/api/schema/" in script.content


# --- tokens: the command and the profile page -------------------------------------------


def test_tokens_command_prints_the_token_alone_on_the_last_line(client, analyst):
    out = StringIO()
    call_command("tokens", "add", analyst.username, "--expires", "30", stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    assert secret.startswith("pst_") and " " not in secret
    assert client.get("/api/findings/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    listing = StringIO()
    call_command("tokens", "list", "--format", "json", stdout=listing)
    (row,) = json.loads(listing.getvalue())
    assert row["user"] == analyst.username and row["state"] == "active" and secret not in listing.getvalue()
    call_command("tokens", "revoke", str(row["id"]), stdout=StringIO())
    assert client.get("/api/findings/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401
    assert AuditEntry.objects.filter(action__in=["token.add", "token.revoke"]).count() == 2


def test_each_user_creates_and_revokes_personal_tokens_on_the_profile_page(client, viewer, analyst):
    client.force_login(viewer)
    page = client.post("/profile/tokens/new/", {"name": "SIEM", "days": "30"})
    assert page.status_code == 200
    secret = ApiToken.objects.get(user=viewer)
    html = page.content.decode()
    shown = html.split('<pre class="secret">', 1)[1].split("</pre>", 1)[0]
    assert shown.startswith(f"pst_{secret.prefix}_")
    assert shown not in client.get("/profile/").content.decode()  # shown once
    others, _ = ApiToken.issue(analyst, actor=None)
    assert client.post(f"/profile/tokens/{others.pk}/revoke/").status_code == 404
    client.post(f"/profile/tokens/{secret.pk}/revoke/")
    assert ApiToken.objects.get(pk=secret.pk).revoked_at is not None
    assert client.get("/api/hosts/", HTTP_AUTHORIZATION=f"Bearer {shown}").status_code == 401
