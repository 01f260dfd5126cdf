"""A risk score that ranks a fleet: 0–100 and readable, no saturation for realistic hosts,
ties broken by what matters, the distribution by band on the fleet page, and old samples
recomputed by the migration so the trend charts stay comparable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from posture import risk
from posture.models import DockerHost, Finding, FindingStatus, RiskException, RiskSample
from posture.rules import Severity

from .fleet_fixtures import poll_with, spec


def items(**counts: int) -> list[risk.RiskItem]:
    """``critical=5, high=20, exposed_critical=1`` → that many open findings."""
    out = []
    for name, n in counts.items():
        exposed = name.startswith("exposed_")
        severity = name.removeprefix("exposed_")
        out += [risk.RiskItem(rule_id=f"r-{severity}", severity=severity, running=True, exposed=exposed)] * n
    return out


def test_realistic_hosts_do_not_saturate():
    scores = {
        "3 criticals": risk.score(items(critical=3)).score,
        "4 criticals": risk.score(items(critical=4)).score,
        "10 criticals": risk.score(items(critical=10)).score,
        "5 criticals + 20 highs": risk.score(items(critical=5, high=20)).score,
        "50 criticals": risk.score(items(critical=50)).score,
    }
    assert len(set(scores.values())) == len(scores)  # every one tells apart
    assert scores["3 criticals"] < scores["4 criticals"] < scores["10 criticals"] < scores["5 criticals + 20 highs"] < scores["50 criticals"] < 100
    assert scores["10 criticals"] == 80 and scores["5 criticals + 20 highs"] == 86


def test_the_score_stays_readable():
    assert risk.score([]).score == 0
    assert risk.score(items(low=1)).score == 2  # anything open shows
    assert risk.score(items(exposed_critical=2)).score == 50  # HALF_POINTS
    assert risk.score(items(critical=1)).score < risk.score(items(exposed_critical=1)).score
    assert 0 <= risk.score(items(exposed_critical=10_000)).score <= 100
    stopped = risk.RiskItem(rule_id="r", severity="critical", running=False, exposed=False)
    assert risk.score([stopped]).points == Severity.CRITICAL.points * risk.STOPPED_FACTOR


def test_bands_cover_zero_to_a_hundred_once():
    covered = [s for _name, low, high in risk.BANDS for s in range(low, high + 1)]
    assert covered == list(range(101))
    assert risk.band(0) == "none" and risk.band(33) == "moderate" and risk.band(86) == "severe"


@pytest.mark.django_db
def test_equal_scores_rank_exposed_criticals_first(client, viewer):
    def host(name: str, *specs) -> DockerHost:
        h = DockerHost.objects.create(name=name, url=f"unix:///{name}.sock")
        poll_with(h, *specs)
        return DockerHost.objects.get(pk=h.pk)

    # Two criticals (80 points: 44) against one exposed critical, one high and five lows
    # (50 + 20 + 10 points: 44 too): the same score, but the exposed critical ranks first.
    quiet = host("a-quiet", spec("privileged", "one"), spec("privileged", "two"))
    exposed = host(
        "b-exposed",
        spec("privileged", "one", exposed=True),
        spec("host-pid", "x"),
        *(spec("default-bridge", f"n{i}") for i in range(5)),
    )
    assert quiet.risk_score == exposed.risk_score
    assert exposed.risk_exposed_critical == 1 and quiet.risk_exposed_critical == 0
    assert list(DockerHost.objects.by_risk().values_list("name", flat=True)) == ["b-exposed", "a-quiet"]
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert page.index("b-exposed") < page.index("a-quiet")


@pytest.mark.django_db
def test_the_fleet_page_shows_hosts_by_band_and_filters_to_one(client, viewer):
    for n, count in enumerate((0, 1, 10)):
        h = DockerHost.objects.create(name=f"h{n}", url=f"unix:///h{n}.sock")
        poll_with(h, *(spec("privileged", f"c{i}") for i in range(count)))
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert "Hosts by risk" in page and 'aria-label="Hosts by risk band: 1 none, 0 low, 1 moderate, 0 high, 1 severe"' in page
    severe = client.get("/?band=severe").content.decode()
    assert ">h2<" in severe and ">h0<" not in severe and ">h1<" not in severe


@pytest.mark.django_db
def test_covered_findings_leave_the_score():
    h = DockerHost.objects.create(name="h", url="unix:///h.sock")
    poll_with(h, spec("privileged", "a"), spec("privileged", "b"))
    before = DockerHost.objects.get(pk=h.pk).risk_score
    RiskException.objects.add(actor=None, rule_id="privileged", name="a", justification="Reviewed lab box", expires_at=timezone.now() + timedelta(days=5))
    after = DockerHost.objects.get(pk=h.pk)
    assert after.risk_score < before and after.risk_critical == 1
    assert RiskSample.objects.filter(host=h).latest("at").score == after.risk_score


# --- the migration: acceptances become exceptions, history is recomputed ------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_acceptances_as_exceptions_and_recomputes_history():
    executor = MigrationExecutor(connection)
    executor.migrate([("posture", "0003_code_health")])
    old = executor.loader.project_state([("posture", "0003_code_health")]).apps
    Host, Finding0, Acceptance = old.get_model("posture", "DockerHost"), old.get_model("posture", "Finding"), old.get_model("posture", "RiskAcceptance")
    Sample, Container, User = old.get_model("posture", "RiskSample"), old.get_model("posture", "ContainerRecord"), old.get_model("auth", "User")
    now = timezone.now()
    user = User.objects.create(username="legacy-analyst")
    host = Host.objects.create(
        name="legacy", url="unix:///legacy.sock", risk_score=100, risk_breakdown=[{"rule": "privileged", "severity": "critical", "count": 4, "points": 160.0}]
    )
    Container.objects.create(host=host, container_id="c" * 64, subject_key="shop/db", name="shop-db-1", image="postgres:16", compose_project="shop")
    common = {"host": host, "cis": "5.4", "severity": "critical", "subject_type": "container", "title": "t", "first_seen": now, "last_seen": now}
    accepted = Finding0.objects.create(fingerprint="a", rule_id="privileged", subject_key="shop/db", subject_name="shop-db-1", status="accepted",
                                       accepted_until=now + timedelta(days=20), **common)  # fmt: skip
    reopened = Finding0.objects.create(fingerprint="b", rule_id="privileged", subject_key="x", subject_name="x", **common)
    Acceptance.objects.create(finding=accepted, accepted_by=user, justification="Old and replaced", expires_at=now - timedelta(days=40))
    Acceptance.objects.create(finding=accepted, accepted_by=user, justification="Behind the VPN, SEC-1", expires_at=now + timedelta(days=20))
    Acceptance.objects.create(finding=reopened, accepted_by=user, justification="Lapsed", expires_at=now - timedelta(days=1))
    Sample.objects.create(
        host=host, at=now - timedelta(days=1), score=97, breakdown=[{"rule": "privileged", "severity": "critical", "count": 4, "points": 160.0}]
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    current = Finding.objects.get(fingerprint="a")
    exception = current.exception
    assert current.status == FindingStatus.ACCEPTED and exception.finding_id == current.pk and exception.is_active
    assert (exception.justification, exception.owner.username, exception.rule_id) == ("Behind the VPN, SEC-1", "legacy-analyst", "privileged")
    assert RiskException.objects.count() == 3
    assert sorted(RiskException.objects.exclude(pk=exception.pk).values_list("status", flat=True)) == ["expired", "expired"]
    assert (current.image, current.compose_project) == ("postgres:16", "shop")
    sample = RiskSample.objects.get(host__name="legacy")
    assert (sample.points, sample.score) == (160.0, risk.scale(160.0)) and sample.score < 97
    migrated = DockerHost.objects.get(name="legacy")
    assert (migrated.risk_points, migrated.risk_score, migrated.risk_critical) == (160.0, risk.scale(160.0), 1)
