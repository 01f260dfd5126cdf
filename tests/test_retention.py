"""Retention: history past the POSTURE_RETENTION_* policies is pruned in small batches by a
beat task, and what explains the current state is never pruned. Rows are built directly
(``tests.factories``) at backdated times; the policies are the defaults unless a test says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from posture import retention
from posture.models import DockerHost, EventKind, Finding, FindingEvent, FindingStatus, PollRun, PollStatus, RetentionMark, RiskSample, Snapshot
from posture.tasks import prune_history

from . import factories

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def samples(host: DockerHost, *, every: timedelta, back: timedelta) -> None:
    at, rows = NOW - back, []
    while at < NOW:
        rows.append(RiskSample(host=host, at=at, score=int(at.timestamp() / 60) % 100))
        at += every
    RiskSample.objects.bulk_create(rows)


def finding(host: DockerHost, key: str, **fields: object) -> Finding:
    values = {"rule_id": "privileged", "severity": "critical", "subject_type": "container", "subject_key": key, "subject_name": key, "title": "t"}
    values |= {"first_seen": days_ago(400), "last_seen": NOW} | fields
    return Finding.objects.create(host=host, fingerprint=f"privileged|container|{key}|", **values)


def test_poll_runs_older_than_the_policy_go_and_their_events_stay():
    host = factories.host("h1")
    old = PollRun.objects.create(host=host, started_at=days_ago(15), status=PollStatus.OK)
    recent = PollRun.objects.create(host=host, started_at=days_ago(13), status=PollStatus.OK)
    event = FindingEvent.objects.create(finding=finding(host, "c1"), poll=old, at=days_ago(15), kind=EventKind.OPENED)
    sample = RiskSample.objects.create(host=host, poll=old, at=days_ago(1), score=10)
    assert retention.prune(NOW).poll_runs == 1
    assert list(PollRun.objects.all()) == [recent]
    event.refresh_from_db()
    sample.refresh_from_db()
    assert event.poll is None and sample.poll is None


def test_snapshots_keep_the_last_ones_one_a_day_and_the_current_one(settings):
    settings.RETENTION_SNAPSHOTS = 3
    host, quiet = factories.host("busy"), factories.host("quiet")
    taken = [days_ago(d + h / 24) for d in (0, 1, 2, 5, 50, 89, 91, 120) for h in (1, 5, 9)]  # three a day
    stored = {at: Snapshot.objects.create(host=host, taken_at=at, digest=f"{at:%s}", data={}) for at in taken}
    # A quiet host whose only (current) snapshot is a year old keeps it.
    ancient = Snapshot.objects.create(host=quiet, taken_at=days_ago(365), digest="q", data={})
    DockerHost.objects.filter(pk=quiet.pk).update(snapshot=ancient)
    current = stored[days_ago(120 + 9 / 24)]  # even an old snapshot stays while it is the host's current one
    DockerHost.objects.filter(pk=host.pk).update(snapshot=current)

    retention.prune(NOW)
    kept = set(Snapshot.objects.filter(host=host).values_list("taken_at", flat=True))
    last_three = set(sorted(taken)[-3:])
    last_of_each_day = {days_ago(d + 1 / 24) for d in (1, 2, 5, 50, 89)}
    assert kept == last_three | last_of_each_day | {current.taken_at}
    assert Snapshot.objects.filter(pk=ancient.pk).exists()

    # A poll that began just before that run stores a snapshot after it: the next run
    # still sees it, and it pushes today's oldest out of the last three.
    Snapshot.objects.create(host=host, taken_at=NOW - timedelta(minutes=1), digest="new", data={})
    retention.prune(NOW + timedelta(hours=1))
    assert not Snapshot.objects.filter(host=host, taken_at=days_ago(9 / 24)).exists()  # today's oldest, no longer among the last three


def test_risk_samples_thin_to_hourly_then_daily_then_go(settings):
    settings.RETENTION_SAMPLE_DAYS = 120
    host = factories.host("h1")
    samples(host, every=timedelta(minutes=20), back=timedelta(days=130))
    retention.prune(NOW)
    rows = list(RiskSample.objects.filter(host=host).order_by("at").values_list("at", flat=True))
    assert rows[0] >= days_ago(120)
    recent = [at for at in rows if at >= days_ago(7)]
    # Buckets are whole UTC hours and days: the daily part ends at the start of the day 90 days ago.
    hourly = [at for at in rows if days_ago(90).replace(hour=0) <= at < days_ago(7)]
    daily = [at for at in rows if at < days_ago(90).replace(hour=0)]
    assert len(recent) == 7 * 24 * 3  # every sample of the last week
    assert len({at.replace(minute=0) for at in hourly}) == len(hourly)  # one an hour
    assert all(at.minute == 40 for at in hourly)  # the last of each hour
    assert len({at.date() for at in daily}) == len(daily) and all(at.hour == 23 for at in daily)  # one a day, its last
    assert len(hourly) >= 82 * 24 and len(daily) >= 29


def test_old_events_go_except_each_findings_latest_of_each_kind():
    host = factories.host("h1")
    flapping = finding(host, "flapper", status=FindingStatus.OPEN)
    kinds = [EventKind.OPENED] + [EventKind.RESOLVED, EventKind.REOPENED] * 20 + [EventKind.CHANGED] * 30
    FindingEvent.objects.bulk_create(FindingEvent(finding=flapping, at=days_ago(390 - i), kind=kind) for i, kind in enumerate(kinds))
    recent = FindingEvent.objects.create(finding=flapping, at=days_ago(3), kind=EventKind.CHANGED)
    pruned = retention.prune(NOW)
    left = list(flapping.events.order_by("at").values_list("kind", flat=True))
    # The opening, the last resolution and reopening (why it is open now), and everything
    # recent; the old changes are superseded by the recent one.
    assert left == [EventKind.OPENED, EventKind.RESOLVED, EventKind.REOPENED, EventKind.CHANGED]
    assert pruned.events == len(kinds) - 3 and flapping.events.last() == recent


def test_long_resolved_findings_go_with_their_events_unless_their_host_is_being_polled():
    host, polling = factories.host("h1"), factories.host("h2")
    gone = finding(host, "gone", status=FindingStatus.RESOLVED, resolved_at=days_ago(400))
    FindingEvent.objects.create(finding=gone, at=days_ago(400), kind=EventKind.RESOLVED)
    lately = finding(host, "lately", status=FindingStatus.RESOLVED, resolved_at=days_ago(30))
    held = finding(polling, "held", status=FindingStatus.RESOLVED, resolved_at=days_ago(400))
    run = PollRun.begin(polling, "a-poll-task")  # a poll of h2 is running: its run holds the lease
    assert retention.prune(timezone.now()).findings == 1
    assert set(Finding.objects.values_list("pk", flat=True)) == {lately.pk, held.pk}
    assert not FindingEvent.objects.filter(finding_id=gone.pk).exists()
    run.finish(PollStatus.OK, at=timezone.now())
    assert retention.prune(timezone.now()).findings == 1 and not Finding.objects.filter(pk=held.pk).exists()


def test_batches_resume_where_a_run_stopped_and_a_second_run_finds_nothing(settings):
    settings.RETENTION_BATCH = 7
    hosts = [factories.host(f"h{i}") for i in range(3)]
    for host in hosts:
        samples(host, every=timedelta(minutes=30), back=timedelta(days=20))
        PollRun.objects.bulk_create(PollRun(host=host, started_at=days_ago(20 - i / 4), status=PollStatus.OK) for i in range(40))
    stopped = retention.prune(NOW, seconds=0)
    assert not stopped.finished and stopped.poll_runs == 0
    assert retention.prune(NOW).finished
    assert RetentionMark.get("risk-hourly") == days_ago(7).replace(hour=12)
    assert not PollRun.objects.filter(started_at__lt=days_ago(14)).exists()
    assert retention.prune(NOW).as_dict() == {"poll_runs": 0, "snapshots": 0, "risk_samples": 0, "events": 0, "findings": 0, "finished": True}


def test_zero_keeps_history_for_ever(settings):
    for name in ("POLL_DAYS", "HOURLY_AFTER_DAYS", "DAILY_AFTER_DAYS", "SAMPLE_DAYS", "EVENT_DAYS", "RESOLVED_DAYS"):
        setattr(settings, f"RETENTION_{name}", 0)
    host = factories.host("h1")
    samples(host, every=timedelta(hours=6), back=timedelta(days=500))
    PollRun.objects.create(host=host, started_at=days_ago(500))
    old = finding(host, "old", status=FindingStatus.RESOLVED, resolved_at=days_ago(900))
    FindingEvent.objects.bulk_create(FindingEvent(finding=old, at=days_ago(900 - i), kind=EventKind.CHANGED) for i in range(5))
    counts = (RiskSample.objects.count(), PollRun.objects.count(), FindingEvent.objects.count())
    assert retention.prune(NOW).as_dict()["risk_samples"] == 0
    assert (RiskSample.objects.count(), PollRun.objects.count(), FindingEvent.objects.count()) == counts


def test_the_beat_task_prunes(settings):
    host = factories.host("h1")
    PollRun.objects.create(host=host, started_at=datetime.now(UTC) - timedelta(days=30))
    assert prune_history.apply().get()["poll_runs"] == 1
