"""Every Celery task. Each takes ids, reloads, returns quietly if the row is gone,
calls one model method or service and logs. All are idempotent, so late acks are safe."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import polling
from .models import Channel, DockerHost, Finding, Notification, PollRun, Report, ReportSchedule, Transition
from .notify import messages, send, transitions
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
        timed_out = polling.record_timeout(host, token, settings.POLL_SOFT_TIME_LIMIT)
        if timed_out is not None:
            notify_poll.delay_on_commit(timed_out.pk)
        return
    if run is None:
        log.info("poll of %s skipped: another poll holds the lock", host.name)
        return
    # Alerts are derived once the poll's writes are committed, by a task of their own.
    notify_poll.delay_on_commit(run.pk)
    log.info("poll of %s: %s %s", host.name, run.status, run.error)
    if run.retryable and self.request.retries < self.max_retries:
        countdown = min(15 * 2**self.request.retries, settings.POLL_RETRY_BACKOFF_MAX)
        raise self.retry(countdown=countdown)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def expire_acceptances() -> int:
    """End exceptions past their expiry and reopen what they covered."""
    expired = Finding.objects.expire_acceptances()
    if expired:
        log.info("%d risk acceptance(s) expired", expired)
    return expired


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


# --- alerts -------------------------------------------------------------------------


def _fan_out(found: list[Transition], batch: str) -> int:
    """Claim one grouped notification per matching channel and send each after commit."""
    if not found:
        return 0
    with transaction.atomic():
        notes = Notification.objects.claim(Channel.objects.filter(enabled=True).with_rules(), found, batch=batch)
        for note in notes:
            send_notification.delay_on_commit(note.pk)
    return len(notes)


@shared_task(**LATE_ACK, soft_time_limit=30, time_limit=60)
def notify_poll(self, poll_id: int) -> int:
    """The alerts of one finished poll; a second call for the same poll sends nothing new."""
    run = PollRun.objects.select_related("host").filter(pk=poll_id).first()
    if run is None:
        return 0
    return _fan_out(transitions.for_poll(run), batch=f"poll:{run.pk}")


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def notify_scan() -> int:
    """Alerts that no poll causes: hosts gone stale, exceptions about to expire."""
    now = timezone.now()
    return _fan_out([*transitions.stale(now), *transitions.expiring(now)], batch=f"scan:{now:%Y-%m-%dT%H:%M:%S}")


@shared_task(**LATE_ACK, soft_time_limit=settings.NOTIFY_TIME_LIMIT - 10, time_limit=settings.NOTIFY_TIME_LIMIT, max_retries=None)
def send_notification(self, notification_id: int) -> None:
    """Send one notification; on failure retry with exponential backoff, then give up
    and mark the channel failing. A sent notification is never sent again."""
    note = Notification.objects.select_related("channel").filter(pk=notification_id).first()
    if note is None or not note.acquire(self.request.id or ""):
        return
    try:
        send.send(note.channel, messages.title(note.transitions), messages.body(note.transitions))
    except (send.DeliveryError, SoftTimeLimitExceeded) as exc:
        error = str(exc) or "the service did not answer in time"
        gave_up = self.request.retries >= settings.NOTIFY_MAX_RETRIES
        note.mark_failed(error, gave_up=gave_up)
        log.warning("notification %s to %s failed (attempt %d): %s", note.pk, note.channel.name, note.attempts, error)
        if not gave_up:
            countdown = min(settings.NOTIFY_RETRY_BACKOFF * 2**self.request.retries, settings.NOTIFY_RETRY_BACKOFF_MAX)
            raise self.retry(countdown=countdown) from None
        return
    note.mark_sent()
