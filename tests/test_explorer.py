"""The findings explorer and the exception pages: filters in the URL, the same rows as the
command, streamed exports safe for spreadsheets, roles, constant query counts."""

from __future__ import annotations

import csv
import html
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from posture.models import AuditAction, AuditEntry, DockerHost, Finding, FindingStatus, RiskException

from .fleet_fixtures import poll_with, spec, two_hosts

pytestmark = pytest.mark.django_db


def htmx(client, url, **extra):
    return client.get(url, HTTP_HX_REQUEST="true", **extra)


def queries(client, url, **extra) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **extra)
        assert response.status_code == 200, url
    return len(ctx.captured_queries)


def grow(hosts: int, per_host: int, start: int = 0) -> None:
    """More hosts and findings, with an exception covering some."""
    for n in range(start, start + hosts):
        host = DockerHost.objects.create(name=f"extra-{n}", url=f"unix:///extra-{n}.sock", labels={"env": "prod", "team": f"t{n}"})
        poll_with(host, *(spec("privileged", f"box-{i}", image=f"app:{i}", project="shop") for i in range(per_host)))
    RiskException.objects.add(
        actor=None, rule_id="privileged", image="app:1", justification="Lab builders, SEC-3", expires_at=timezone.now() + timedelta(days=9)
    )


# --- what it shows -------------------------------------------------------------------------


def test_filters_live_in_the_url_and_select_rows(client, viewer):
    two_hosts()
    client.force_login(viewer)
    page = client.get("/findings/?rule=docker-socket-mounted").content.decode()
    assert "proxy" in page and "traefik-1" in page and "cache" not in page
    assert 'value="docker-socket-mounted" selected' in page
    page = client.get("/findings/?image=redis:*&label=team%3Ddata").content.decode()
    assert ">redis<" in page and ">cache<" not in page


def test_htmx_asks_for_the_results_only_and_the_grouped_view_counts_hosts(client, viewer):
    two_hosts()
    client.force_login(viewer)
    part = htmx(client, "/findings/?severity=critical").content.decode()
    assert part.strip().startswith('<div id="results">') and "<html" not in part
    grouped = client.get("/findings/?view=rules").content.decode()
    assert "docker-socket-mounted" in grouped and "Show hosts" in grouped
    hosts = htmx(client, "/findings/?view=rules&group=docker-socket-mounted&part=group-hosts").content.decode()
    assert hosts.strip().startswith('<tr id="group-docker-socket-mounted"') and "web-1" in hosts and "web-2" in hosts
    # Without JS the same link reloads the page with the group open.
    assert "web-2" in client.get("/findings/?view=rules&group=docker-socket-mounted").content.decode()


@pytest.mark.parametrize("query", ["severity=urgent", "host=ghost", "label=novalue", "since=yesterday", "rule=nope&status=closed", "page=zz"])
def test_bad_filters_get_a_clear_message_never_a_500(client, viewer, query):
    two_hosts()
    client.force_login(viewer)
    response = client.get(f"/findings/?{query}")
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert "These filters cannot be applied" in response.content.decode()
    assert client.get(f"/findings/export.csv?{query}").status_code in (200, 400)


def test_each_finding_shows_the_exception_that_covers_it(client, viewer):
    two_hosts()
    exception = RiskException.objects.add(actor=None, rule_id="privileged", justification="Lab builder, SEC-1", expires_at=timezone.now() + timedelta(days=3))
    client.force_login(viewer)
    finding = Finding.objects.get(rule_id="privileged")
    assert f"exception #{exception.pk}" in client.get("/findings/?status=accepted").content.decode()
    detail = client.get(f"/hosts/web-1/findings/{finding.pk}/").content.decode()
    assert f"Exception #{exception.pk}" in detail and "Lab builder, SEC-1" in detail
    assert f"exception #{exception.pk}" in client.get("/hosts/web-1/").content.decode()
    listing = client.get("/exceptions/").content.decode()
    assert f"?exception={exception.pk}&amp;status=accepted" in listing and "1 finding" in listing


# --- the same rows as the command ------------------------------------------------------------


def command_rows(*args: str) -> list[tuple[str, str, str]]:
    out = io.StringIO()
    call_command("findings", *args, "--format", "json", stdout=out)
    return [(r["host"], r["rule"], r["subject"]) for r in json.loads(out.getvalue())]


def page_rows(client, query: str) -> list[tuple[str, str, str]]:
    response = client.get(f"/findings/export.json?{query}")
    assert isinstance(response, StreamingHttpResponse)
    return [(r["host"], r["rule"], r["subject"]) for r in json.loads(b"".join(response.streaming_content))]


@pytest.mark.parametrize(
    ("query", "args"),
    [
        ("rule=docker-socket-mounted", ["--rule", "docker-socket-mounted"]),
        ("label=team%3Dedge", ["--label", "team=edge"]),
        ("image=redis%3A*", ["--image", "redis:*"]),
        ("project=shop", ["--project", "shop"]),
        ("since=1d&status=all", ["--since", "1d", "--status", "all"]),
        ("name=traefik-*&severity=high", ["--name", "traefik-*", "--severity", "high"]),
        ("q=REDIS", ["--q", "REDIS"]),
    ],
)
def test_the_same_filter_gives_the_same_rows_on_the_page_and_in_the_command(client, viewer, query, args):
    two_hosts()
    client.force_login(viewer)
    rows = command_rows(*args)
    assert rows and rows == page_rows(client, query)
    # And the page's own table lists exactly those, in that order.
    html = client.get(f"/findings/?{query}").content.decode()
    positions = [html.index(f">{subject}<") for _host, _rule, subject in rows]
    assert positions == sorted(positions) and f"{len(rows)} finding" in html


def test_csv_export_streams_and_neutralises_formulas(client, viewer):
    host = DockerHost.objects.create(name="h", url="unix:///h.sock")
    poll_with(host, spec("privileged", '=HYPERLINK("http://x")'), spec("privileged", "+1"), spec("privileged", "@sum"), spec("privileged", "-2"))
    client.force_login(viewer)
    response = client.get("/findings/export.csv?rule=privileged")
    assert isinstance(response, StreamingHttpResponse) and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(r["subject"] for r in rows) == sorted(['\'=HYPERLINK("http://x")', "'+1", "'@sum", "'-2"])


def test_sarif_export_is_valid_json_with_every_result(client, viewer):
    two_hosts()
    client.force_login(viewer)
    doc = json.loads(b"".join(client.get("/findings/export.sarif?status=all").streaming_content))
    assert doc["version"] == "2.1.0" and len(doc["runs"][0]["results"]) == Finding.objects.count()


# --- roles -----------------------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_create_exceptions(client, viewer):
    two_hosts()
    client.force_login(viewer)
    assert "Create exception" not in client.get("/findings/").content.decode()
    assert client.get("/exceptions/").status_code == 200
    assert client.get("/exceptions/new/").status_code == 403
    assert client.post("/findings/except/", {"id": [f.pk for f in Finding.objects.all()]}).status_code == 403
    assert client.post("/exceptions/new/", {"rule": "privileged"}).status_code == 403


def test_an_outsider_sees_no_findings(client, outsider):
    two_hosts()
    client.force_login(outsider)
    assert client.get("/findings/").status_code == 403
    assert client.get("/findings/export.csv").status_code == 403
    assert client.get("/exceptions/").status_code == 403


# --- from a selection to an exception ------------------------------------------------------------


def test_create_exception_from_a_selection_with_preview_and_audit(client, analyst):
    one, two = two_hosts()
    client.force_login(analyst)
    ids = list(Finding.objects.filter(rule_id="docker-socket-mounted").values_list("pk", flat=True))
    response = client.post("/findings/except/", {"id": ids})
    assert response.status_code == 302
    form_url = response["Location"]
    assert "rule=docker-socket-mounted" in form_url and "image=traefik%3Av3.%2A" in form_url and "label=env%3Dprod" in form_url
    form = client.get(form_url).content.decode()
    assert "would cover" in form and "<strong>2</strong> open findings on <strong>2</strong>" in form
    preview = htmx(client, form_url + "&part=preview").content.decode()
    assert preview.strip().startswith('<div id="preview"') and "<strong>2</strong>" in preview
    nothing = htmx(client, "/exceptions/new/?rule=privileged&image=nope*&part=preview").content.decode()
    assert "covers nothing" in nothing
    wide = htmx(client, "/exceptions/new/?up_to=critical&part=preview").content.decode()
    assert "more than half the fleet" in wide
    data = {"rule": "docker-socket-mounted", "label": "env=prod", "image": "traefik:v3.*", "justification": "Traefik reads the socket, SEC-8",
            "expires_on": (timezone.now() + timedelta(days=30)).date().isoformat()}  # fmt: skip
    saved = client.post("/exceptions/new/", data)
    assert saved.status_code == 302
    exception = RiskException.objects.get()
    assert exception.owner == analyst and exception.created_by == analyst
    assert set(Finding.objects.filter(pk__in=ids).values_list("status", flat=True)) == {FindingStatus.ACCEPTED}
    assert AuditEntry.objects.filter(action=AuditAction.EXCEPTION_ADD, actor=analyst).count() == 1
    page = client.get(saved["Location"]).content.decode()
    assert "2 findings" in page and "Exception created" in page


def test_the_whole_filtered_set_and_bad_posts(client, analyst):
    two_hosts()
    client.force_login(analyst)
    response = client.post("/findings/except/", {"all": "1", "image": "redis:*"})
    assert "rule=port-sensitive-service-exposed" in response["Location"] and "image=redis%3A7" in response["Location"]
    assert client.post("/findings/except/", {}).status_code == 302  # nothing selected: back, with a message
    bad = client.post("/exceptions/new/", {"rule": "privileged", "justification": "x", "expires_on": "2001-01-01"})
    assert bad.status_code == 400 and "Pick a day after today" in bad.content.decode() and not RiskException.objects.exists()


def test_editing_and_removing_from_the_page(client, analyst):
    two_hosts()
    exception = RiskException.objects.add(actor=analyst, rule_id="privileged", justification="Lab, SEC-4", expires_at=timezone.now() + timedelta(days=3))
    client.force_login(analyst)
    day = (timezone.now() + timedelta(days=60)).date().isoformat()
    response = client.post(f"/exceptions/{exception.pk}/edit/", {"justification": "Lab, still, SEC-4", "owner": analyst.pk, "expires_on": day})
    assert response.status_code == 302
    assert Finding.objects.get(rule_id="privileged").accepted_until.date().isoformat() == day
    assert client.post(f"/exceptions/{exception.pk}/remove/").status_code == 302
    assert Finding.objects.get(rule_id="privileged").status == FindingStatus.OPEN
    actions = list(AuditEntry.objects.filter(target=str(exception)).order_by("at").values_list("action", flat=True))
    assert actions == [AuditAction.EXCEPTION_ADD, AuditAction.EXCEPTION_EDIT, AuditAction.EXCEPTION_REMOVE]


# --- constant query counts ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/findings/",
        "/findings/?status=all&label=env%3Dprod&name=*&q=e",
        "/findings/?view=rules",
        "/findings/?view=rules&group=privileged",
        "/exceptions/",
        "/exceptions/?show=all",
        "/exceptions/new/?rule=privileged&image=app:*",
        "/",
    ],
)
def test_page_query_counts_do_not_grow_with_the_fleet(client, analyst, url):
    two_hosts()
    client.force_login(analyst)
    RiskException.objects.add(actor=None, rule_id="privileged", justification="Lab builders, SEC-2", expires_at=timezone.now() + timedelta(days=9))
    small = queries(client, url)
    grow(hosts=6, per_host=12)
    assert queries(client, url) == small


def test_exception_detail_query_count_does_not_grow_with_coverage(client, analyst):
    two_hosts()
    client.force_login(analyst)
    grow(hosts=1, per_host=3)
    exception = RiskException.objects.get()
    small = queries(client, f"/exceptions/{exception.pk}/")
    grow(hosts=5, per_host=12, start=1)
    assert queries(client, f"/exceptions/{exception.pk}/") == small


def test_pages_of_the_explorer_and_the_fleet_keep_the_filter_and_push_their_url(client, viewer):
    grow(hosts=30, per_host=2)  # 60 findings: two pages of 50; 30 hosts: two pages of 25
    client.force_login(viewer)
    for url, target in (("/findings/?rule=privileged&status=all", "results"), ("/?label=env%3Dprod", "hosts")):
        query = html.escape(url.split("?", 1)[1])
        first = client.get(url).content.decode()
        assert "Page 1 of 2" in first and "Previous" not in first
        assert f'href="?{query}&amp;page=2"' in first
        assert f'hx-get="?{query}&amp;page=2" hx-target="#{target}" hx-swap="outerHTML" hx-push-url="true">Next</a>' in first
        second = htmx(client, f"{url}&page=2").content.decode()
        assert "Page 2 of 2" in second and "Next</a>" not in second
        assert f'hx-get="?{query}&amp;page=1" hx-target="#{target}"' in second
