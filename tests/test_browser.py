"""Headless Debian Chromium driven by Playwright: each role walks fleet → host → finding,
an analyst presses Poll now against a real engine and accepts a risk; a viewer cannot.
Screenshots of every page land in test-artifacts/screenshots/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import sync_playwright

from posture.models import DockerHost, Finding
from posture.polling import poll

from . import factories
from .conftest import PASSWORD, need

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        need("Debian's chromium is not installed: apt-get install chromium")
    # Playwright's sync API keeps an event loop on this thread; the ORM calls the tests
    # make between browser steps are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        # The flags keep Chromium off the network: this machine reaches nothing outside.
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    p = context.new_page()
    p.csp_errors = []
    p.on("console", lambda msg: p.csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield p
    assert p.csp_errors == [], p.csp_errors
    context.close()


def login(page, user) -> None:
    page.goto("/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def fleet(transactional_db):
    """A polled host as rows (a database on every interface, a host-network proxy)."""
    return factories.polled("web-1", labels={"env": "prod"})


@pytest.mark.parametrize("role", ["admin", "analyst", "viewer"])
def test_each_role_walks_fleet_host_finding(page, fleet, role, request):
    user = request.getfixturevalue(role)
    login(page, user)
    assert page.locator("h1").inner_text() == "Fleet"
    shot(page, f"{role}-fleet")
    page.click("text=web-1")
    page.wait_for_url("**/hosts/web-1/")
    assert "Database, cache, broker or admin port" in page.content()
    shot(page, f"{role}-host")
    page.click("text=Container shares the host's network namespace")
    page.wait_for_url(re.compile(r"/findings/\d+/$"))
    assert page.locator("text=CIS Docker Benchmark v1.6.0").count() == 1
    assert "--network <app-net>" in page.locator("pre.remedy").inner_text()
    shot(page, f"{role}-finding")
    page.goto("/rules/")
    shot(page, f"{role}-rules")
    can_act = role != "viewer"
    page.goto("/hosts/web-1/")
    assert (page.locator("#poll-now").count() == 1) is can_act


def test_poll_now_updates_the_page_in_place(page, analyst, engine, celery_worker):
    host = DockerHost.objects.create(name="web-2", url=engine.url)
    poll(host)
    login(page, analyst)
    page.goto("/hosts/web-2/")
    assert page.locator("#findings").inner_text().count("edge-late") == 0
    page.evaluate("window.stillThisPage = true")
    engine.container("edge-late", network_mode="host")
    page.click("#poll-now")
    page.wait_for_selector("text=Poll finished", timeout=30000)
    page.wait_for_function("document.querySelector('#findings').innerText.includes('edge-late')", timeout=15000)
    assert page.evaluate("window.stillThisPage") is True  # parts were swapped, no reload
    shot(page, "analyst-host-after-poll")


def test_accepting_a_risk_takes_it_out_of_the_score(page, analyst, fleet):
    login(page, analyst)
    before = DockerHost.objects.get(pk=fleet.pk).risk_score
    finding = Finding.objects.get(host=fleet, rule_id="port-sensitive-service-exposed")
    page.goto(f"/hosts/web-1/findings/{finding.pk}/")
    page.fill("#id_justification", "Reachable only through the bastion; SEC-77")
    page.fill("#id_expires_on", (timezone.now() + timedelta(days=30)).date().isoformat())
    page.click("text=Accept risk")
    page.wait_for_selector("text=Risk accepted until")
    shot(page, "analyst-finding-accepted")
    page.goto("/hosts/web-1/")
    after = int(page.locator("#summary .score").inner_text())
    assert after < before and after == DockerHost.objects.get(pk=fleet.pk).risk_score


def test_a_viewer_cannot_poll_or_accept(page, viewer, fleet):
    login(page, viewer)
    finding = Finding.objects.filter(host=fleet).first()
    page.goto(f"/hosts/web-1/findings/{finding.pk}/")
    assert page.locator("text=Accept risk").count() == 0
    status = page.evaluate(
        """async () => {
            const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
            const r = await fetch('/hosts/web-1/poll/', {method: 'POST', headers: {'X-CSRFToken': token}});
            return r.status;
        }"""
    )
    assert status == 403
    shot(page, "viewer-finding")


def test_the_topology_draws_under_the_strict_csp(page, viewer, engine):
    engine.container("pg", ports={"5432/tcp": 15933})
    engine.container("edge", network_mode="host")
    host = DockerHost.objects.create(name="web-3", url=engine.url, host_listeners=True)
    poll(host)
    login(page, viewer)
    page.goto("/hosts/web-3/")
    page.click("text=Topology")
    page.wait_for_url("**/hosts/web-3/topology/")
    graph = page.locator("figure.topology svg")
    assert graph.count() == 1 and graph.bounding_box()["width"] > 200
    drawn = page.locator("figure.topology").inner_text()
    assert "outside" in drawn and "host network namespace" in drawn
    shot(page, "viewer-topology")


def test_the_api_docs_render_under_the_strict_csp_and_tokens_are_made_on_the_profile(page, admin, webhook_channel):
    login(page, admin)
    page.goto("/profile/")
    page.fill("#id_name", "docs")
    page.click("text=Create token")
    token = page.inner_text("pre.secret").strip()
    assert token.startswith("pst_")
    shot(page, "admin-profile")
    page.goto("/alerts/")
    page.click("text=Send test")
    page.wait_for_selector("text=test message sent")
    shot(page, "admin-alerts")
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Posture API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("text=/api/hosts/")
    shot(page, "admin-api-docs")


@pytest.fixture
def webhook_channel(db):
    from posture.models import AlertRule
    from posture.notify import service

    from .webhook import Webhook

    hook = Webhook()
    service.new_channel("team-chat", hook.url()).add(actor=None, rule=AlertRule())
    yield hook
    hook.stop()
