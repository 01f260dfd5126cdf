"""The polling pipeline with real processes: beat dispatches, prefork workers poll,
Redis carries the work, PostgreSQL keeps it. Nothing here is faked but the slowness."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from posture.models import DockerHost, EventKind, Finding, HostStatus, PollRun, PollStatus
from posture.tasks import poll_host

from .processes import CeleryProcesses, celery_processes, ok_polls
from .slow_proxy import slow_engine
from .waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(name="celery_processes")
def _celery_processes(transactional_db, redis_url, tmp_path) -> Iterator[CeleryProcesses]:
    limits = {"POSTURE_POLL_DEADLINE": "30", "POSTURE_POLL_SOFT_LIMIT": "60", "POSTURE_POLL_HARD_LIMIT": "90"}
    with celery_processes(redis_url, tmp_path, POSTURE_DISPATCH_EVERY="1", **limits) as procs:
        yield procs


def test_polls_happen_on_their_own_at_the_interval_and_catch_new_containers(engine, celery_processes):
    host = DockerHost.objects.create(name="scheduled", url=engine.url, poll_interval=10)
    celery_processes.start_worker()
    celery_processes.start_beat()
    wait_for(lambda: len(ok_polls(host)) >= 1, timeout=60, what="the first scheduled poll")
    engine.container("late-db", ports={"5432/tcp": 15632})
    wait_for(lambda: len(ok_polls(host)) >= 2, timeout=60, what="the second scheduled poll")
    first, second = ok_polls(host)[:2]
    gap = (second.started_at - first.started_at).total_seconds()
    assert gap >= 9, gap  # not polled before its interval came round
    finding = Finding.objects.get(host=host, rule_id="port-sensitive-service-exposed")
    assert finding.first_seen == second.started_at


def test_an_unreachable_engine_does_not_hold_up_the_others(engine, second_engine, celery_processes, tmp_path):
    good = DockerHost.objects.create(name="good", url=engine.url, poll_interval=10)
    also_good = DockerHost.objects.create(name="also-good", url=second_engine.url, poll_interval=10)
    bad = DockerHost.objects.create(name="bad", url=f"unix://{tmp_path}/absent.sock", poll_interval=10)
    celery_processes.start_worker()
    celery_processes.start_beat()
    wait_for(lambda: ok_polls(good) and ok_polls(also_good), timeout=60, what="both good hosts to be polled")
    wait_for(lambda: DockerHost.objects.get(pk=bad.pk).last_status == HostStatus.UNREACHABLE, timeout=60, what="the bad host to be marked")
    bad.refresh_from_db()
    assert "no such file or directory" in bad.last_error
    assert PollRun.objects.filter(host=bad, status=PollStatus.FAILED).exists()


def test_a_worker_killed_mid_poll_loses_nothing(engine, celery_processes, tmp_path):
    engine.container("edge", network_mode="host")
    with slow_engine(engine.socket, tmp_path / "slow.sock", delay=4) as url:
        host = DockerHost.objects.create(name="slow", url=url, poll_interval=3600)
        celery_processes.start_worker(concurrency=1)
        poll_host.delay(host.pk)
        wait_for(lambda: PollRun.objects.filter(host=host, status=PollStatus.RUNNING).exists(), timeout=30, what="the poll to start")
        (child,) = celery_processes.children()
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: ok_polls(host), timeout=60, what="the re-delivered poll to finish")
    runs = list(PollRun.objects.filter(host=host).order_by("started_at"))
    assert [r.status for r in runs] == [PollStatus.LOST, PollStatus.OK]
    assert runs[0].token == runs[1].token  # the same task, re-delivered
    finding = Finding.objects.get(host=host, rule_id="host-network")
    assert list(finding.events.values_list("kind", flat=True)) == [EventKind.OPENED]
