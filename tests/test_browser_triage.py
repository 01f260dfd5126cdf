"""Fleet triage in Debian's Chromium, on two real engines: filter the explorer to one rule
across both hosts, export the CSV, create an exception scoped by image from a selection,
see the covered findings accepted on both host pages and the risk drop, then move time
past the expiry and see them reopen. Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from posture.models import DockerHost, EventKind, Finding, FindingStatus, RiskException
from posture.polling import poll
from posture.tasks import expire_exceptions

from .test_browser import browser, login, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
RULE = "host-network"
IMAGE = "traefik:v3"


@pytest.fixture
def fleet(engine, second_engine):
    """web-1 and web-2: on each, a Traefik (by image) and a plain busybox share the host's network."""
    for eng, proxy, other in ((engine, "proxy-a", "debug-a"), (second_engine, "edge-b", "debug-b")):
        eng.container(proxy, image=eng.tag_image(IMAGE), network_mode="host")
        eng.container(other, network_mode="host")
    hosts = [
        DockerHost.objects.create(name="web-1", url=engine.url, labels={"env": "prod", "team": "edge"}),
        DockerHost.objects.create(name="web-2", url=second_engine.url, labels={"env": "prod", "team": "data"}),
    ]
    for host in hosts:
        assert poll(host).succeeded
    return hosts


def host_score(tab, name: str) -> int:
    tab.goto(f"/hosts/{name}/")
    return int(tab.locator("#summary .score").inner_text())


def finding_line(tab, subject: str) -> str:
    return tab.locator("#findings li", has_text=subject).filter(has_text="host's network namespace").first.inner_text()


def test_triage_a_rule_across_two_hosts_with_an_exception_that_expires(page, analyst, fleet):  # noqa: F811
    login(page, analyst)
    before = {name: host_score(page, name) for name in ("web-1", "web-2")}

    # 1. The explorer, filtered to one rule: htmx swaps the rows and pushes the URL.
    page.click("nav[aria-label=Main] >> text=Findings")
    page.wait_for_url("**/findings/")
    page.evaluate("window.stillThisPage = true")
    page.select_option("select[name=rule]", RULE)
    page.wait_for_url(re.compile(rf"rule={RULE}"))
    rows = page.locator("#finding-rows tbody tr")
    rows.first.wait_for()
    assert page.evaluate("window.stillThisPage") is True  # swapped in place, not reloaded
    assert rows.count() == 4
    table = page.locator("#finding-rows").inner_text()
    assert "web-1" in table and "web-2" in table and "proxy-a" in table and "edge-b" in table
    shot(page, "triage-explorer-one-rule")

    # 2. The CSV export: exactly the filtered set.
    with page.expect_download() as download:
        page.click("text=CSV")
    with open(download.value.path(), encoding="utf-8") as fh:
        exported = list(csv.DictReader(io.StringIO(fh.read())))
    assert sorted((r["host"], r["subject"]) for r in exported) == [("web-1", "debug-a"), ("web-1", "proxy-a"), ("web-2", "debug-b"), ("web-2", "edge-b")]
    assert {r["rule"] for r in exported} == {RULE}

    # 3. Select the two Traefik rows and create an exception from them: the form is
    #    pre-filled with the narrowest common scope (the rule, the shared label, the image).
    for subject in ("proxy-a", "edge-b"):
        page.locator("#finding-rows tbody tr", has_text=subject).locator("input[type=checkbox]").check()
    page.click("text=Create exception from selected")
    page.wait_for_url("**/exceptions/new/**")
    assert page.input_value("select[name=rule]") == RULE
    assert page.input_value("input[name=image]") == IMAGE
    assert page.input_value("input[name=label]") == "env=prod"
    assert "2 open findings on 2 hosts" in page.locator("#preview").inner_text().replace("\n", " ")
    page.fill("#id_justification", "Traefik needs the host network on the edge; SEC-313")
    page.fill("#id_expires_on", (timezone.now() + timedelta(days=2)).date().isoformat())
    shot(page, "triage-exception-form")
    page.click("#save-exception")
    page.wait_for_url(re.compile(r"/exceptions/\d+/$"))
    assert "2 findings" in page.locator("#coverage").inner_text()
    shot(page, "triage-exception")
    exception = RiskException.objects.get()

    # 4. Both host pages: the Traefik findings are accepted by the exception, the risk dropped.
    for name, subject in (("web-1", "proxy-a"), ("web-2", "edge-b")):
        assert host_score(page, name) < before[name]
        assert f"by exception #{exception.pk}" in finding_line(page, subject)
        assert "accepted" not in finding_line(page, "debug")  # another image: not in scope
        shot(page, f"triage-{name}-accepted")

    # 5. Time moves past the expiry; beat's task reopens what the exception covered.
    with time_machine.travel(timezone.now() + timedelta(days=3), tick=True):
        assert expire_exceptions.apply().get() == 2
        for name, subject in (("web-1", "proxy-a"), ("web-2", "edge-b")):
            assert host_score(page, name) == before[name]
            assert "accepted" not in finding_line(page, subject)
        finding = Finding.objects.get(host__name="web-1", subject_name="proxy-a", rule_id=RULE)
        page.goto(f"/hosts/web-1/findings/{finding.pk}/")
        assert "Acceptance expired" in page.locator(".timeline").inner_text()
        shot(page, "triage-reopened")
        page.goto(f"/exceptions/{exception.pk}/")
        assert "Exception expired" in page.locator(".timeline").inner_text()
    assert finding.status == FindingStatus.OPEN and finding.events.last().kind == EventKind.ACCEPTANCE_EXPIRED
