"""Posture is a timeline: findings open, refresh, resolve, reopen and keep their
identity across container re-creation; acceptances lapse; polls are claimed once.

Each poll here applies a hand-built snapshot (what the collector would have read) to
the host; the real engine appears only where the collector's own part is the point."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from posture.collector.snapshot import HostSnapshot
from posture.models import DockerHost, EventKind, Finding, FindingEvent, FindingStatus, HostStatus, PollRun, PollStatus, RiskException
from posture.polling import poll
from posture.rules import evaluate_all
from posture.tasks import poll_host

from . import factories
from .builders import compose, container, port, snapshot
from .fake_engines import serving

pytestmark = pytest.mark.django_db

COMPOSE = compose("shop", "db")
EMPTY = snapshot()


def poll_of(host: DockerHost, snap: HostSnapshot) -> PollRun:
    """One poll whose engine answered with ``snap``: the part of polling after collection."""
    run = PollRun.begin(host, uuid.uuid4().hex)
    host.apply_snapshot(snap, evaluate_all(snap, host_name=host.name), run)
    return run


@pytest.fixture
def host(db) -> DockerHost:
    return factories.host("h1", last_status=HostStatus.NEW, last_poll_at=None, last_success_at=None, next_poll_at=None)


def open_rules(host: DockerHost, subject: str) -> set[str]:
    return set(Finding.objects.filter(host=host, subject_name=subject, status=FindingStatus.OPEN).values_list("rule_id", flat=True))


def kinds(finding: Finding) -> list[str]:
    return list(finding.events.values_list("kind", flat=True))


def test_a_container_added_between_polls_opens_a_finding_first_seen_at_that_poll(host):
    poll_of(host, EMPTY)
    second = poll_of(host, snapshot([container("late-db", ports=[port(5432, 15532)])]))
    finding = Finding.objects.get(host=host, rule_id="port-sensitive-service-exposed")
    assert finding.first_seen == second.started_at and finding.last_seen == second.started_at
    assert kinds(finding) == [EventKind.OPENED]
    assert finding.events.get().poll == second
    assert second.opened >= 1


def test_a_removed_container_resolves_its_findings(host):
    poll_of(host, snapshot([container("edge", network_mode="host")]))
    run = poll_of(host, EMPTY)
    finding = Finding.objects.get(host=host, rule_id="host-network")
    assert finding.status == FindingStatus.RESOLVED and finding.resolved_at == run.started_at
    assert kinds(finding) == [EventKind.OPENED, EventKind.RESOLVED]
    assert run.resolved >= 1


def test_a_recreated_container_keeps_its_history_and_reopens(host):
    first = poll_of(host, snapshot([container("edge", network_mode="host", id="1" * 64)]))
    poll_of(host, EMPTY)
    poll_of(host, snapshot([container("edge", network_mode="host", id="2" * 64)]))  # a new container id
    finding = Finding.objects.get(host=host, rule_id="host-network")
    assert finding.status == FindingStatus.OPEN and finding.first_seen == first.started_at
    assert kinds(finding) == [EventKind.OPENED, EventKind.RESOLVED, EventKind.REOPENED]


def test_compose_identity_survives_a_new_container_name(host):
    poll_of(host, snapshot([container("shop-db-1", ports=[port(5432, 15533)], labels=COMPOSE)]))
    poll_of(host, snapshot([container("shop_db_1", ports=[port(5432, 15533)], labels=COMPOSE)]))  # compose v1 naming
    finding = Finding.objects.get(host=host, rule_id="port-sensitive-service-exposed")
    assert finding.subject_key == "shop/db" and finding.subject_name == "shop_db_1"
    assert kinds(finding) == [EventKind.OPENED]


def test_the_same_snapshot_twice_writes_no_finding_and_last_seen_follows_the_host(host):
    edge = snapshot([container("edge", network_mode="host", cap_add=("NET_ADMIN",))])
    first = poll_of(host, edge)
    events = FindingEvent.objects.count()
    snapshots = host.snapshots.count()
    # Taken later and more cheaply (reused inspects): the same engine state all the same.
    again = poll_of(host, snapshot(edge.containers, collected_at="2026-11-28T10:05:00+00:00", api_calls=4, inspects_reused=1))
    assert FindingEvent.objects.count() == events
    assert host.snapshots.count() == snapshots and again.snapshot_changed is False
    findings = list(Finding.objects.filter(host=host).select_related("host"))
    assert {f.last_seen for f in findings} == {first.started_at}  # not rewritten
    assert {f.last_seen_at for f in findings} == {DockerHost.objects.get(pk=host.pk).last_success_at}


def test_a_resolved_finding_was_last_seen_by_the_poll_before(host):
    poll_of(host, snapshot([container("edge", network_mode="host")]))
    seen = poll_of(host, snapshot([container("edge", network_mode="host")]))
    poll_of(host, EMPTY)
    finding = Finding.objects.select_related("host").get(host=host, rule_id="host-network")
    assert finding.status == FindingStatus.RESOLVED and finding.last_seen_at == finding.last_seen == seen.finished_at


def test_a_changed_configuration_is_an_event(host):
    poll_of(host, snapshot([container("svc", ports=[port(80, 18480)])]))
    run = poll_of(host, snapshot([container("svc", ports=[port(80, 18481)])]))
    finding = Finding.objects.get(host=host, rule_id="port-all-interfaces")
    change = finding.events.get(kind=EventKind.CHANGED)
    assert change.poll == run and "evidence" in change.detail


def test_stopping_a_container_keeps_the_finding_open_but_marks_it_not_running(host):
    poll_of(host, snapshot([container("edge", network_mode="host")]))
    score_running = DockerHost.objects.get(pk=host.pk).risk_score
    poll_of(host, snapshot([container("edge", network_mode="host", running=False)]))
    finding = Finding.objects.get(host=host, rule_id="host-network")
    assert finding.status == FindingStatus.OPEN and finding.running is False
    assert DockerHost.objects.get(pk=host.pk).risk_score < score_running


def test_accepted_findings_leave_the_score_until_the_acceptance_expires(host, analyst):
    pg = snapshot([container("pg", ports=[port(5432, 15534)])])
    poll_of(host, pg)
    before = DockerHost.objects.get(pk=host.pk).risk_score
    finding = Finding.objects.get(host=host, rule_id="port-sensitive-service-exposed")
    until = timezone.now() + timedelta(days=7)
    finding.accept(by=analyst, until=until, justification="Behind the VPN firewall; ticket SEC-42")
    accepted = DockerHost.objects.get(pk=host.pk).risk_score
    assert accepted < before
    poll_of(host, pg)  # a poll keeps the acceptance
    assert Finding.objects.get(pk=finding.pk).status == FindingStatus.ACCEPTED
    assert DockerHost.objects.get(pk=host.pk).risk_score == accepted

    assert RiskException.objects.expire_due(until + timedelta(seconds=1)) == 1
    finding.refresh_from_db()
    assert finding.status == FindingStatus.OPEN
    assert DockerHost.objects.get(pk=host.pk).risk_score == before
    assert kinds(finding)[-2:] == [EventKind.ACCEPTED, EventKind.ACCEPTANCE_EXPIRED]
    assert finding.events.get(kind=EventKind.ACCEPTED).actor == analyst


def test_events_are_append_only(host):
    poll_of(host, snapshot([container("edge", network_mode="host")]))
    event = FindingEvent.objects.first()
    event.kind = EventKind.RESOLVED
    with pytest.raises(ValueError, match="append-only"):
        event.save()


def test_a_duplicate_dispatch_claims_nothing(host):
    now = timezone.now()
    assert [c.host_id for c in DockerHost.objects.claim_due(now)] == [host.pk]
    assert DockerHost.objects.claim_due(now) == []
    assert DockerHost.objects.due_for_poll(now).count() == 0


def test_the_poll_lease_admits_one_poll_at_a_time_and_a_redelivery(host):
    first = PollRun.start(host, "task-a")
    assert first is not None
    assert PollRun.start(host, "task-b") is None
    assert poll(host, token="task-b") is None
    again = PollRun.start(host, "task-a")  # the same task, re-delivered after its worker died
    assert again is not None
    first.refresh_from_db()
    assert first.status == PollStatus.LOST
    again.finish(PollStatus.OK, at=timezone.now())  # released
    assert PollRun.start(host, "task-b") is not None


def test_a_lease_nobody_renews_runs_out_and_is_taken_over(host):
    dead = PollRun.start(host, "dead-task")
    PollRun.objects.filter(pk=dead.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert PollRun.start(host, "new-task") is not None
    dead.refresh_from_db()
    assert dead.status == PollStatus.LOST and "stopped before it finished" in dead.error


def test_an_unreachable_host_is_marked_with_its_error(make_host, tmp_path):
    host = make_host("gone", url=f"unix://{tmp_path}/gone.sock")
    run = poll(host)
    host.refresh_from_db()
    assert run.status == PollStatus.FAILED and run.retryable
    assert host.last_status == HostStatus.UNREACHABLE and "no such file or directory" in host.last_error


def test_a_host_without_a_good_poll_for_three_intervals_is_stale(db):
    fresh = factories.host("fresh", poll_interval=60, polled_at=timezone.now() - timedelta(seconds=170))
    late = factories.host("late", poll_interval=60, polled_at=timezone.now() - timedelta(seconds=181))
    never = factories.host("never", poll_interval=3600, last_status=HostStatus.NEW, last_poll_at=None, last_success_at=None)
    assert (fresh.display_status, late.display_status, never.display_status) == ("ok", "stale", "new")
    # The fleet filters read the same stored stale_at as the status shown.
    assert list(DockerHost.objects.with_display_status(HostStatus.STALE)) == [late]
    assert list(DockerHost.objects.with_display_status(HostStatus.OK)) == [fresh]
    assert list(DockerHost.objects.with_display_status(HostStatus.NEW)) == [never]
    poll_of(late, EMPTY)  # a good poll: fresh again for three more intervals
    late.refresh_from_db()
    assert late.display_status == "ok" and late.stale_at == late.last_success_at + timedelta(seconds=180)
    assert list(DockerHost.objects.with_display_status(HostStatus.OK)) == [fresh, late]
    late.poll_interval = 10  # an edited interval moves it too
    late.register(actor=None, changed=["poll_interval"])
    assert DockerHost.objects.get(pk=late.pk).stale_at == late.last_success_at + timedelta(seconds=30)


def test_a_poll_records_its_cost_and_a_risk_sample(engine, make_host):
    host = make_host("h1", engine)
    engine.container("one")
    engine.container("two", start=False)
    run = poll(host)
    assert run.status == PollStatus.OK and run.containers == 2 and run.api_calls >= 6
    assert run.duration is not None
    sample = host.risk_samples.get()
    assert sample.poll == run and sample.score == DockerHost.objects.get(pk=host.pk).risk_score


def test_a_failing_host_backs_off_sooner_for_a_transient_failure_than_a_permanent_one(make_host, tmp_path):
    gone = make_host("gone", url=f"unix://{tmp_path}/gone.sock", poll_interval=300)
    poll_host.apply(args=(gone.pk,))
    gone.refresh_from_db()
    assert PollRun.objects.filter(host=gone, status=PollStatus.FAILED).count() == 1
    transient = gone.next_try_at - gone.last_poll_at
    assert gone.failures == 1 and transient < timedelta(seconds=gone.poll_interval)

    answers = {"/version": {"Version": "1", "ApiVersion": "1.41"}, "/info": b"not json"}
    with serving(tmp_path / "liar.sock", answers) as url:
        liar = make_host("liar", url=url, poll_interval=300)
        poll_host.apply(args=(liar.pk,))
    liar.refresh_from_db()
    assert PollRun.objects.filter(host=liar).count() == 1
    assert liar.last_status == HostStatus.ERROR and "not the Docker API" in liar.last_error
    assert liar.next_try_at - liar.last_poll_at >= timedelta(seconds=liar.poll_interval)


def test_a_poll_task_for_a_removed_host_does_nothing(db):
    poll_host.apply(args=(987654,))
    assert not PollRun.objects.exists()


def test_expiry_rescores_each_host_once_however_many_findings_expire(db, analyst, django_assert_max_num_queries):
    host = DockerHost.objects.create(name="h1", url="unix:///nowhere.sock")
    now = timezone.now()
    until = now + timedelta(days=1)
    for n in range(4):
        finding = Finding.objects.create(
            host=host, fingerprint=f"f{n}", rule_id="privileged", severity="critical", subject_type="container", subject_key=f"c{n}",
            subject_name=f"c{n}", title="t", first_seen=now, last_seen=now,
        )  # fmt: skip
        finding.accept(by=analyst, until=until, justification="Reviewed: lab host")
    samples = host.risk_samples.count()
    # Fixed, whatever the number of exceptions or findings: lock, end, release, re-cover,
    # events, audit, then one score per host.
    with django_assert_max_num_queries(13):
        assert RiskException.objects.expire_due(until + timedelta(seconds=1)) == 4
    assert host.risk_samples.count() == samples + 1  # one new trend point, not four
    assert Finding.objects.filter(host=host, status=FindingStatus.OPEN).count() == 4
    assert FindingEvent.objects.filter(kind=EventKind.ACCEPTANCE_EXPIRED).count() == 4
    assert RiskException.objects.expire_due(until + timedelta(seconds=2)) == 0
