"""Every Celery task. Each takes ids, reloads, returns quietly if the row is gone,
calls one model method or service and logs. All are idempotent, so late acks are safe."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import polling, retention
from .models import Channel, DockerHost, Notification, PollRun, Report, ReportSchedule, ReportStatus, RiskException, Transition
from .notify import messages, send, transitions
from .reports.generate import ReportNotStored, generate

log = logging.getLogger(__name__)
# Work that must survive a worker dying mid-task: acknowledged only when done, and put
# back on the queue if the process running it is killed. Safe because each is idempotent.
LATE_ACK = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def dispatch_polls() -> int:
    """Mark polls whose worker died as lost, then enqueue one ``poll_host`` per due host,
    claimed in batches (one statement each): a second dispatcher claims nothing twice."""
    now = timezone.now()
    lost = PollRun.objects.sweep(now)
    if lost:
        log.warning("%d poll(s) lost with their worker", lost)
    dispatched = 0
    while claims := DockerHost.objects.claim_due(now, limit=settings.DISPATCH_BATCH):
        with poll_host.app.producer_or_acquire() as producer:
            for claim in claims:
                if claim.poll_now:
                    # No ``expires``: a late poll of a free host still runs; one made redundant
                    # by a poll since its due time returns at once (``poll_host``).
                    poll_host.apply_async((claim.host_id,), {"due": claim.due.isoformat()}, queue=claim.queue, producer=producer)
                    dispatched += 1
        if len(claims) < settings.DISPATCH_BATCH:
            break
    if dispatched:
        log.info("dispatched %d poll(s)", dispatched)
    return dispatched


@shared_task(**LATE_ACK, soft_time_limit=settings.POLL_SOFT_TIME_LIMIT, time_limit=settings.POLL_TIME_LIMIT, max_retries=settings.POLL_MAX_RETRIES)
def poll_host(self, host_id: int, due: str | None = None, interrupted: str = "") -> None:
    """Poll one host. ``due``: when a scheduled poll was due (the dispatcher's); a poll
    that started since then makes this one redundant. ``interrupted``: why an earlier
    attempt of this task could not finish (recorded on its run)."""
    # The stored snapshot's data is loaded only when the engine's answers changed.
    host = DockerHost.objects.select_related("snapshot").defer("snapshot__data").filter(pk=host_id).first()
    if host is None:
        return
    due_at = datetime.fromisoformat(due) if due else None
    if due_at is not None and host.polled_since(due_at):
        log.info("poll of %s due at %s skipped: polled since", host.name, due)
        return
    try:
        run = polling.poll(host, token=self.request.id or "", due_at=due_at, interrupted=interrupted)
    except polling.DATABASE_UNAVAILABLE as exc:
        # Recorded on this poll's run by the retry, once the database answers again.
        cause = f"the database went away during the poll ({type(exc).__name__}: {str(exc).strip()[:300]}); retried"
        log.warning("poll of %s: %s", host.name, cause)
        _retry(self, countdown=min(5 * 2**self.request.retries, 60), due=due, interrupted=cause)
        return
    if run is None:
        # Another poll of this host runs: try again when its lease could have run out;
        # then this one runs, or returns at once if that poll made it redundant.
        log.info("poll of %s waits: another poll holds the lease", host.name)
        _retry(self, countdown=settings.POLL_LEASE_SECONDS, due=due or timezone.now().isoformat())
        return
    # Alerts are derived once the poll's writes are committed, by a task of their own.
    notify_poll.delay_on_commit(run.pk)
    log.info("poll of %s: %s %s", host.name, run.status, run.error)
    # The poll has finished (good or failed, recorded): what follows one — alerts — is
    # enqueued here. The next poll is the dispatcher's (a failing host's back-off is its
    # next_poll_at).


def _retry(task: Any, *, countdown: float, **kwargs: Any) -> None:
    if task.request.retries >= task.max_retries:
        log.warning("%s gave up after %d retries; the dispatcher polls the host when it is next due", task.name, task.request.retries)
        return
    raise task.retry(countdown=countdown, kwargs={**task.request.kwargs, **kwargs})


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def expire_exceptions() -> int:
    """End exceptions past their expiry and reopen what they covered."""
    expired = RiskException.objects.expire_due(timezone.now())
    if expired:
        log.info("exceptions expired: %d finding(s) reopened", expired)
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
    # A report whose worker died whole stays "rendering" until its lease runs out; then
    # anyone may render it, so hand it to a worker rather than wait for a re-delivery.
    for pk in Report.objects.filter(status=ReportStatus.RENDERING, lease_until__lt=now).values_list("pk", flat=True):
        generate_report.delay(pk)
    return created


@shared_task(**LATE_ACK, soft_time_limit=settings.REPORT_SOFT_TIME_LIMIT, time_limit=settings.REPORT_TIME_LIMIT, max_retries=8)
def generate_report(self, report_id: int) -> None:
    report = Report.objects.filter(pk=report_id).select_related("schedule").first()
    if report is None:
        return
    try:
        generate(report, token=self.request.id or "")
    except SoftTimeLimitExceeded:
        report.fail(f"rendering took longer than {settings.REPORT_SOFT_TIME_LIMIT}s")
    except ReportNotStored:
        _retry(self, countdown=min(settings.REPORT_RETRY_BASE * 2**self.request.retries, 3600))


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
