"""Pages that stay small and cheap however big the fleet: per-host open counts kept on the
host row by every path that changes a finding's status, one indexed stale filter, query
counts that do not grow with hosts, containers, findings or events, long lists a page at a
time. (Their speed at 10,000 hosts is measured by ``tests/bench_pages.py``, not here.)"""

from __future__ import annotations

import uuid
from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from posture.collector.snapshot import HostSnapshot
from posture.models import DockerHost, EventKind, Finding, FindingEvent, FindingStatus, HostStatus, PollRun, RiskException, Severity
from posture.rules import evaluate_all

from . import factories
from .builders import compose, container, port, snapshot

pytestmark = pytest.mark.django_db

# Every filter and sort of the fleet page.
FLEET_VIEWS = [
    {},
    {"status": "ok"},
    {"status": "stale"},
    {"status": "unreachable"},
    {"severity": "critical"},
    {"label": "env=prod"},
    {"q": "h"},
    {"sort": "name"},
    {"sort": "findings"},
    {"sort": "polled"},
    {"status": "ok", "severity": "high", "sort": "findings", "label": "env=prod"},
]


def poll_of(host: DockerHost, snap: HostSnapshot) -> PollRun:
    run = PollRun.begin(host, uuid.uuid4().hex)
    host.apply_snapshot(snap, evaluate_all(snap, host_name=host.name), run)
    return run


def stored_counts(host: DockerHost) -> dict[str, int]:
    row = DockerHost.objects.get(pk=host.pk)
    return {s.value: getattr(row, f"open_{s}") for s in Severity} | {"total": row.open_total}


def counted(host: DockerHost) -> dict[str, int]:
    """What the counts must say: the open findings, counted the slow way."""
    open_ = Finding.objects.filter(host=host, status=FindingStatus.OPEN)
    return {s.value: open_.filter(severity=s).count() for s in Severity} | {"total": open_.count()}


def queries(client, url: str, data: dict | None = None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, data or {})
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


# --- the counts on the host row --------------------------------------------------------------


def test_open_counts_follow_every_status_change(analyst):
    host = factories.host("h1", last_status=HostStatus.NEW, last_poll_at=None, last_success_at=None)
    pg = container("pg", ports=[port(5432, 15534)])
    poll_of(host, snapshot([pg, container("edge", network_mode="host")]))  # opened
    assert stored_counts(host) == counted(host) and stored_counts(host)["critical"] >= 1

    finding = Finding.objects.get(host=host, rule_id="port-sensitive-service-exposed")
    until = timezone.now() + timedelta(days=3)
    finding.accept(by=analyst, until=until, justification="Behind the VPN firewall; ticket SEC-42")  # accepted: not open
    assert stored_counts(host) == counted(host)

    RiskException.objects.expire_due(until + timedelta(seconds=1))  # open again
    assert stored_counts(host) == counted(host)

    poll_of(host, snapshot([pg]))  # edge gone: resolved
    assert stored_counts(host) == counted(host)
    poll_of(host, snapshot([pg, container("edge", network_mode="host")]))  # back: reopened
    assert stored_counts(host) == counted(host)
    poll_of(host, snapshot())  # only the daemon's defaults left
    assert stored_counts(host) == counted(host) and stored_counts(host)["critical"] == 0


def test_fleet_totals_and_the_severity_filter_read_the_host_rows(client, viewer):
    quiet = factories.polled("quiet", snapshot([container("idle")]))
    loud = factories.polled("loud")
    client.force_login(viewer)
    page = client.get("/").context
    assert page["totals"] == {s.value: counted(quiet)[s.value] + counted(loud)[s.value] for s in Severity}
    assert page["host_count"] == 2
    only = [h.name for h, _spark in client.get("/", {"severity": "critical"}).context["rows"]]
    assert only == ["loud"]
    by_findings = [h.name for h, _spark in client.get("/", {"sort": "findings"}).context["rows"]]
    assert by_findings == ["loud", "quiet"]


def test_migration_fills_the_counts_of_hosts_that_exist():
    """The columns' backfill reads the findings as RiskSample.record would."""
    host = factories.polled("old")
    DockerHost.objects.filter(pk=host.pk).update(open_critical=0, open_high=0, open_medium=0, open_low=0, open_info=0, open_total=0, stale_at=None)
    import_module("posture.migrations.0010_scale").derive_counts_and_stale_at(apps, None)
    assert stored_counts(host) == counted(host)
    host.refresh_from_db()
    assert host.stale_at == host.last_success_at + timedelta(seconds=3 * host.poll_interval)


# --- the fleet page ---------------------------------------------------------------------------


@pytest.mark.parametrize("view", FLEET_VIEWS, ids=lambda v: "&".join(f"{k}={w}" for k, w in v.items()) or "default")
def test_every_fleet_filter_and_sort_costs_the_same_queries_for_1_or_12_hosts(client, viewer, view):
    client.force_login(viewer)

    def fleet_of(first: int, last: int) -> None:
        factories.polled_hosts((f"h{i}" for i in range(first, last)), labels={"env": "prod"})
        factories.host(f"h{last}-stale", polled_at=timezone.now() - timedelta(days=1), labels={"env": "prod"})
        factories.host(f"h{last}-down", last_status=HostStatus.UNREACHABLE, last_error="no route", labels={"env": "prod"})

    fleet_of(0, 1)
    few = queries(client, "/", view)
    fleet_of(1, 8)
    factories.polled_hosts((f"s{i}" for i in range(3)), labels={"env": "stage"})
    assert queries(client, "/", view) == few


def test_the_stale_filter_is_one_comparison_whatever_the_intervals(client, viewer):
    client.force_login(viewer)
    for i, interval in enumerate((30, 60, 300, 900, 3600)):
        factories.host(f"late-{i}", poll_interval=interval, polled_at=timezone.now() - timedelta(seconds=3 * interval + 5))
        factories.host(f"fine-{i}", poll_interval=interval, polled_at=timezone.now() - timedelta(seconds=3 * interval - 5))
    with CaptureQueriesContext(connection) as ctx:
        rows = client.get("/", {"status": "stale"}).context["rows"]
    assert sorted(h.name for h, _spark in rows) == [f"late-{i}" for i in range(5)]
    filtered = [q["sql"] for q in ctx.captured_queries if "stale_at" in q["sql"]]
    assert filtered and all(q.count('"stale_at" <') == 1 and '"poll_interval" =' not in q for q in filtered)
    assert sorted(h.name for h, _spark in client.get("/", {"status": "ok"}).context["rows"]) == [f"fine-{i}" for i in range(5)]


# --- the host page -------------------------------------------------------------------------------


def big_snapshot(containers: int) -> HostSnapshot:
    """A host whose every container is a published database: one critical finding or more each."""
    return snapshot([container(f"db-{i:03d}", ports=[port(5432, 20000 + i)], labels=compose("shop", f"db{i}")) for i in range(containers)])


def test_a_big_host_page_shows_a_page_of_findings_and_containers(client, viewer):
    client.force_login(viewer)
    small = factories.polled("small", big_snapshot(2))
    big = factories.polled("big", big_snapshot(120))
    assert queries(client, "/hosts/big/") == queries(client, "/hosts/small/")

    page = client.get("/hosts/big/")
    body = page.content.decode()
    assert len(page.context["containers"]) == 50 and page.context["containers"].paginator.count == 120
    assert sum(len(items) for _sev, items, _total in page.context["grouped"]) == 50
    # The page's heading counts the whole host's criticals, not the page's.
    [(severity, items, total)] = page.context["grouped"]
    assert (severity, len(items), total) == ("critical", 50, Finding.objects.filter(host=big, severity="critical").current().count())
    assert "1–50 of 120" in body and "containers=2" in body and "findings=2" in body

    third = client.get("/hosts/big/", {"containers": "3"})
    assert [c.name for c in third.context["containers"]] == [f"db-{i:03d}" for i in range(100, 120)]
    part = client.get("/hosts/big/", {"containers": "2", "part": "containers"}, HTTP_HX_REQUEST="true").content.decode()
    assert part.lstrip().startswith('<section id="containers"') and "db-050" in part and "<html" not in part
    assert "Next" not in client.get("/hosts/small/").content.decode()
    assert small.open_total < big.open_total


def test_a_finding_with_thousands_of_events_shows_the_latest(client, viewer):
    client.force_login(viewer)
    host = factories.polled("h1")
    finding = Finding.objects.filter(host=host).first()
    start = finding.first_seen + timedelta(seconds=1)
    FindingEvent.objects.bulk_create(
        FindingEvent(finding=finding, kind=EventKind.CHANGED, at=start + timedelta(seconds=i), detail={"evidence": {"from": i, "to": i + 1}})
        for i in range(230)
    )
    url = f"/hosts/h1/findings/{finding.pk}/"
    few = queries(client, f"/hosts/h1/findings/{Finding.objects.filter(host=host).last().pk}/")
    assert queries(client, url) == few
    page = client.get(url)
    events = list(page.context["events"])
    assert len(events) == 31 and events[-1].at == start + timedelta(seconds=229)  # 231 events: the last page
    assert "200 earlier events" in page.content.decode()
    first = list(client.get(url, {"events": "1"}).context["events"])
    assert first[0].kind == EventKind.OPENED and len(first) == 100


# --- the rules page ------------------------------------------------------------------------------


def test_rule_hits_count_hosts_containers_per_host_and_current_findings():
    shared = snapshot([container("pg", ports=[port(5432, 15532)]), container("redis", ports=[port(6379, 16379)])])
    one, two = factories.polled("one", shared), factories.polled("two", shared)
    Finding.objects.filter(host=two, subject_name="redis").update(status=FindingStatus.RESOLVED)
    hits = Finding.objects.current().rule_hits()["port-sensitive-service-exposed"]
    # pg on both hosts and redis on one: the same container name on two hosts is two containers.
    assert hits == {"hosts": 2, "containers": 3, "findings": 3}
    assert Finding.objects.filter(host=one).current().rule_hits()["port-sensitive-service-exposed"]["containers"] == 2
