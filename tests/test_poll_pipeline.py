"""Dispatch, leases and the cost of a poll, on the fast layer (a simulated fleet, no Docker).

The same mechanisms under a real worker, beat, Redis and PostgreSQL, with faults, are
the chaos suite's (tests/test_chaos.py); their speed is the benchmark's."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from posture import polling
from posture.models import DockerHost, HostStatus, PollRun, PollStatus
from posture.models.querysets import FAILING_QUEUE, POLLS_QUEUE, next_due, phase_slot
from posture.simulate import simulated_fleet
from posture.tasks import dispatch_polls, poll_host

pytestmark = pytest.mark.django_db

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, Any]]:
    """Polls the dispatcher enqueues, instead of a broker."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(poll_host, "apply_async", lambda args, kwargs=None, **opts: calls.append({"host": args[0], **(kwargs or {}), **opts}))
    return calls


def hosts(n: int, **fields: Any) -> list[DockerHost]:
    return DockerHost.objects.bulk_create(DockerHost(name=f"h{i:05d}", url=f"unix:///nowhere/{i}.sock", **fields) for i in range(n))


# --- dispatch -------------------------------------------------------------------------


def test_dispatch_claims_due_hosts_in_batches_of_one_statement_each(sent, settings):
    settings.DISPATCH_BATCH = 200  # SQLite's variable limit would split larger ones
    hosts(1200, next_poll_at=timezone.now() - timedelta(seconds=5), poll_interval=60)
    with CaptureQueriesContext(connection) as queries:
        assert dispatch_polls.apply().get() == 1200
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "posture_dockerhost" in q["sql"]]
    assert len(updates) == 6  # 1200 / 200, one UPDATE each
    statements = [q for q in queries if "SAVEPOINT" not in q["sql"]]  # the test's own transaction
    assert len(statements) <= 1 + 6 * 2 + 1  # the sweep; per batch a locking SELECT and the UPDATE; the empty end
    assert len({c["host"] for c in sent}) == 1200
    assert DockerHost.objects.due_for_poll().count() == 0


def test_intervals_do_not_drift_with_dispatch_delay(sent):
    due = timezone.now() - timedelta(seconds=7)  # the dispatcher came 7 s late
    (host,) = hosts(1, next_poll_at=due, poll_interval=60)
    dispatch_polls.apply()
    host.refresh_from_db()
    assert host.next_poll_at == due + timedelta(seconds=60)  # not dispatch time + 60 s
    assert sent == [{"host": host.pk, "due": due.isoformat(), "queue": POLLS_QUEUE, "producer": sent[0]["producer"]}]


def test_hosts_all_overdue_after_a_restart_are_spread_over_the_interval(sent):
    now = timezone.now()
    fleet = hosts(200, next_poll_at=now - timedelta(minutes=30), poll_interval=60)
    dispatch_polls.apply()
    dispatched_by = (timezone.now() - now).total_seconds()  # the dispatcher's own clock ran on meanwhile
    assert sent == []  # no burst
    offsets = sorted((h.next_poll_at - now).total_seconds() for h in DockerHost.objects.filter(pk__in=[h.pk for h in fleet]))
    assert offsets[0] > 0 and offsets[-1] <= 60 + dispatched_by
    assert max(b - a for a, b in zip(offsets, offsets[1:], strict=False)) < 3  # evenly, no clump or hole
    again = [phase_slot(h.pk, 60, now + timedelta(hours=1)) for h in fleet[:5]]
    assert [(t - now).total_seconds() % 60 for t in again] == pytest.approx(offsets_of(fleet[:5], now), abs=1e-3)


def offsets_of(fleet: list[DockerHost], now) -> list[float]:
    """A host keeps its phase: its slot an hour later is at the same place in the interval."""
    return [(DockerHost.objects.get(pk=h.pk).next_poll_at - now).total_seconds() % 60 for h in fleet]


def test_a_new_host_is_polled_at_once_then_keeps_its_slot():
    now = timezone.now()
    nxt, poll_now = next_due(7, None, 60, now)
    assert poll_now and now + timedelta(seconds=60) < nxt <= now + timedelta(seconds=120)
    assert next_due(7, nxt, 60, nxt + timedelta(seconds=2)) == (nxt + timedelta(seconds=60), True)


def test_failing_hosts_go_to_their_own_queue(sent):
    good, bad = hosts(2, next_poll_at=timezone.now(), poll_interval=60)
    DockerHost.objects.filter(pk=bad.pk).update(failures=3)
    dispatch_polls.apply()
    assert {c["host"]: c["queue"] for c in sent} == {good.pk: POLLS_QUEUE, bad.pk: FAILING_QUEUE}


def test_dispatch_marks_runs_whose_worker_died_as_lost(sent):
    (host,) = hosts(1, next_poll_at=timezone.now() + timedelta(hours=1))
    run = PollRun.start(host, "dead-worker")
    PollRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    dispatch_polls.apply()
    run.refresh_from_db()
    assert run.status == PollStatus.LOST and run.finished_at is not None and "stopped before it finished" in run.error


# --- the poll task ----------------------------------------------------------------------


@pytest.fixture
def fleet():
    with simulated_fleet(hosts=2, containers=20, seed=3) as running:
        yield running


def test_a_queued_poll_made_redundant_by_a_later_poll_does_not_run(fleet):
    host = DockerHost.objects.create(name="sim", url=fleet.urls[0])
    due = timezone.now()
    poll_host.apply(args=(host.pk,))  # a manual poll, after the scheduled one was queued
    poll_host.apply(args=(host.pk,), kwargs={"due": due.isoformat()})
    assert PollRun.objects.filter(host=host).count() == 1


def test_a_late_poll_of_a_free_host_runs(fleet):
    host = DockerHost.objects.create(name="sim", url=fleet.urls[0])
    poll_host.apply(args=(host.pk,), kwargs={"due": (timezone.now() - timedelta(hours=2)).isoformat()})
    assert PollRun.objects.get(host=host).status == PollStatus.OK


def test_an_unchanged_poll_writes_a_constant_handful_of_rows(fleet):
    host = DockerHost.objects.create(name="sim", url=fleet.urls[0])
    poll_host.apply(args=(host.pk,))
    rows_before = {m: m.objects.count() for m in (PollRun,)}
    with CaptureQueriesContext(connection) as queries:
        poll_host.apply(args=(host.pk,))
    writes = [q["sql"] for q in queries if q["sql"].startswith(WRITES)]
    assert len(queries) <= 8, [q["sql"][:80] for q in queries]
    # the lease check, the run's insert and finish, the host's status; no finding, inventory or sample
    assert len(writes) <= 4, [w[:80] for w in writes]
    assert not [w for w in writes if any(f'"posture_{t}"' in w for t in ("finding", "findingevent", "containerrecord", "risksample"))]
    assert PollRun.objects.count() == rows_before[PollRun] + 1
    run = PollRun.objects.filter(host=host).first()
    assert run.status == PollStatus.OK and run.containers == 20 and run.api_calls == 4  # the lists only


def test_a_changed_poll_rewrites_only_what_changed(fleet):
    host = DockerHost.objects.create(name="sim", url=fleet.urls[1])
    poll_host.apply(args=(host.pk,))
    ids = set(host.containers.values_list("pk", flat=True))
    fleet.churn(1, 1)
    poll_host.apply(args=(host.pk,))
    run = PollRun.objects.filter(host=host).first()
    assert run.status == PollStatus.OK and run.snapshot_changed
    after = set(host.containers.values_list("pk", flat=True))
    assert len(ids & after) >= len(ids) - 2  # the inventory as a diff, not re-inserted
    assert host.containers.count() == len(DockerHost.objects.get(pk=host.pk).snapshot.snapshot().containers)


def test_a_database_outage_mid_poll_is_a_failed_run_with_its_cause_then_retried(fleet, monkeypatch):
    host = DockerHost.objects.create(name="sim", url=fleet.urls[0])
    real = DockerHost.apply_snapshot
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DockerHost, "apply_snapshot", flaky)
    poll_host.apply(args=(host.pk,))  # eager: the retry runs at once
    first, second = PollRun.objects.filter(host=host).order_by("pk")
    assert first.status == PollStatus.FAILED and "database went away" in first.error and "server closed" in first.error
    assert second.status == PollStatus.OK and first.token == second.token
    assert not PollRun.objects.running().exists()


def test_any_other_failure_ends_the_run_failed_with_the_step_and_cause(fleet, monkeypatch):
    host = DockerHost.objects.create(name="sim", url=fleet.urls[0])

    def broken(*args, **kwargs):
        raise ValueError("a rule engine bug")

    monkeypatch.setattr(polling, "evaluate_all", broken)
    poll_host.apply(args=(host.pk,))
    run = PollRun.objects.get(host=host)
    host.refresh_from_db()
    assert run.status == PollStatus.FAILED and run.error == "evaluating the rules failed: ValueError: a rule engine bug"
    assert host.last_status == HostStatus.ERROR and host.failures == 1 and host.next_try_at is not None


def test_back_off_doubles_and_is_capped(settings):
    settings.POLL_RETRY_BASE, settings.POLL_BACKOFF_MAX = 15, 600
    host = DockerHost(poll_interval=60)
    waits = []
    for failures in range(1, 9):
        host.failures = failures
        waits.append(host.backoff(transient=True).total_seconds())
    assert waits == [15, 30, 60, 120, 240, 480, 600, 600]
    host.failures = 1
    assert host.backoff(transient=False).total_seconds() == 60  # a permanent failure waits an interval


# --- the heartbeat ------------------------------------------------------------------------


class FakeRun:
    def __init__(self, pk: int) -> None:
        self.pk, self.renewed = pk, 0

    def renew(self) -> bool:
        self.renewed += 1
        return True


def test_the_heartbeat_renews_a_long_poll_and_forgets_it_when_it_ends(settings):
    settings.POLL_LEASE_SECONDS = 0.3
    beat = polling.Heartbeat()
    quick, slow = FakeRun(1), FakeRun(2)
    with beat.holding(quick):
        pass
    with beat.holding(slow):
        time.sleep(0.5)
    renewed = slow.renewed
    time.sleep(0.3)
    assert quick.renewed == 0 and renewed >= 1 and slow.renewed == renewed


def test_the_host_page_says_when_a_failing_host_is_tried_next(client, viewer):
    (host,) = hosts(1, poll_interval=60)
    run = PollRun.begin(host, "t")
    host.record_failure(run, "the engine did not answer within the 60 s poll deadline", status=HostStatus.UNREACHABLE, transient=True)
    host.record_failure(PollRun.begin(host, "u"), "the engine did not answer within the 60 s poll deadline", status=HostStatus.UNREACHABLE, transient=True)
    client.force_login(viewer)
    page = client.get(f"/hosts/{host.name}/").content.decode()
    assert "2 failed polls in a row; next try at" in page
    assert DockerHost.objects.get(pk=host.pk).next_try_at.strftime("%H:%M:%S") in page


def test_a_host_read_another_way_is_read_in_full_whatever_the_engine_answers(fleet):
    host = DockerHost.objects.create(name="sim", url=fleet.urls[0])
    poll_host.apply(args=(host.pk,))
    first = DockerHost.objects.get(pk=host.pk).answers_digest
    # The same engine, the same answers, read another way: the fingerprint covers how the
    # host is read, so the poll reads the snapshot (its digest says what changed).
    DockerHost.objects.filter(pk=host.pk).update(host_listeners=True)
    poll_host.apply(args=(host.pk,))
    run = PollRun.objects.filter(host=host).first()
    assert run.status == PollStatus.OK and run.api_calls > 4
    assert DockerHost.objects.get(pk=host.pk).answers_digest != first
