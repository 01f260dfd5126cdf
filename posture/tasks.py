"""Every Celery task. Each takes ids, reloads, returns quietly if the row is gone,
calls one model method or service and logs. All are idempotent, so late acks are safe."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from . import polling, retention
from .models import DockerHost, Finding, Report, ReportSchedule
from .reports.generate import generate

log = logging.getLogger(__name__)
# Work that must survive a worker dying mid-task: acknowledged only when done, and put
# back on the queue if the process running it is killed. Safe because each is idempotent.
LATE_ACK = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def dispatch_polls() -> int:
    """Enqueue one ``poll_host`` per due host; a duplicate dispatch claims nothing."""
    now = timezone.now()
    dispatched = 0
    for host in DockerHost.objects.due_for_poll(now).only("pk", "name", "next_poll_at", "poll_interval"):
        if host.claim_dispatch(now):
            # An outage must not leave a backlog: a poll not started within one
            # interval is dropped, the next dispatch makes a fresh one.
            poll_host.apply_async((host.pk,), expires=host.poll_interval)
            dispatched += 1
    if dispatched:
        log.info("dispatched %d poll(s)", dispatched)
    return dispatched


@shared_task(**LATE_ACK, soft_time_limit=settings.POLL_SOFT_TIME_LIMIT, time_limit=settings.POLL_TIME_LIMIT, max_retries=settings.POLL_MAX_RETRIES)
def poll_host(self, host_id: int) -> None:
    host = DockerHost.objects.select_related("snapshot").filter(pk=host_id).first()
    if host is None:
        return
    token = self.request.id or ""
    try:
        run = polling.poll(host, token=token)
    except SoftTimeLimitExceeded:
        polling.record_timeout(host, token, settings.POLL_SOFT_TIME_LIMIT)
        return
    if run is None:
        log.info("poll of %s skipped: another poll holds the lock", host.name)
        return
    log.info("poll of %s: %s %s", host.name, run.status, run.error)
    if run.retryable and self.request.retries < self.max_retries:
        countdown = min(15 * 2**self.request.retries, settings.POLL_RETRY_BACKOFF_MAX)
        raise self.retry(countdown=countdown)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def expire_acceptances() -> int:
    """Reopen findings whose risk acceptance has run out."""
    expired = Finding.objects.expire_acceptances()
    if expired:
        log.info("%d risk acceptance(s) expired", expired)
    return expired


@shared_task(ignore_result=True, soft_time_limit=retention.RUN_SECONDS + 60, time_limit=retention.RUN_SECONDS + 120)
def prune_history() -> dict[str, object]:
    """Drop history past the retention policies, a short batch at a time (``posture/retention.py``)."""
    pruned = retention.prune()
    log.info("retention: %s", pruned)
    return pruned.as_dict()


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def dispatch_reports() -> int:
    """Create this period's report for every due schedule, once, and enqueue it."""
    now = timezone.now()
    created = 0
    for schedule in ReportSchedule.objects.filter(enabled=True, next_run_at__lte=now):
        report = schedule.claim_due(now)
        if report is not None:
            generate_report.delay_on_commit(report.pk)
            created += 1
    return created


@shared_task(**LATE_ACK, soft_time_limit=settings.REPORT_SOFT_TIME_LIMIT, time_limit=settings.REPORT_TIME_LIMIT)
def generate_report(self, report_id: int) -> None:
    report = Report.objects.filter(pk=report_id).select_related("schedule").first()
    if report is None:
        return
    try:
        generate(report, token=self.request.id or "")
    except SoftTimeLimitExceeded:
        report.fail(f"rendering took longer than {settings.REPORT_SOFT_TIME_LIMIT}s")
