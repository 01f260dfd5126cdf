"""Retention: history pruned under the ``POSTURE_RETENTION_*`` policies (README, "Retention").

- poll runs older than ``RETENTION_POLL_DAYS``;
- snapshots: each host's last ``RETENTION_SNAPSHOTS``, and the last of each day for
  ``RETENTION_SNAPSHOT_DAYS``, and always the host's current one;
- risk samples: one an hour (the last of the hour) past ``RETENTION_HOURLY_AFTER_DAYS``,
  one a day past ``RETENTION_DAILY_AFTER_DAYS``, none past ``RETENTION_SAMPLE_DAYS``;
- finding events past ``RETENTION_EVENT_DAYS``, except each finding's newest event of each
  kind: whatever explains a finding's current state stays as long as the finding;
- findings resolved for ``RETENTION_RESOLVED_DAYS``, with their events.

Run by the beat task ``prune_history``. It never holds up a poll: every batch is its own
short transaction of at most ``RETENTION_BATCH`` rows, rows are chosen among those no poll
writes (old ones), and a host's long-resolved findings are deleted only while no poll holds
the host's lease, with the host row locked (``FOR NO KEY UPDATE SKIP LOCKED``) so none can
store its result meanwhile. Passes that walk time keep a ``RetentionMark``, so a run reads only what
aged past its policy since the last one, and a run that used up its time budget resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Min
from django.utils import timezone

from posture.models import DockerHost, Finding, FindingEvent, PollRun, RetentionMark, RiskSample, Snapshot

log = logging.getLogger(__name__)

RUN_SECONDS = 240.0  # a run takes no new batch past this; the next one continues
SLICE = timedelta(days=1)  # time-walking passes advance a day at a time
HOST_CHUNK = 500  # hosts per window query
# A snapshot committed a moment after the pass read the table is read again next time.
SNAPSHOT_MARGIN = timedelta(minutes=5)


@dataclass
class Pruned:
    poll_runs: int = 0
    snapshots: int = 0
    risk_samples: int = 0
    events: int = 0
    findings: int = 0
    finished: bool = True  # False: the time budget ran out first; the next run continues

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    @property
    def left(self) -> bool:
        return time.monotonic() < self.deadline


def prune(now: datetime | None = None, *, seconds: float = RUN_SECONDS) -> Pruned:
    """One retention run: every policy in turn, until done or ``seconds`` are spent."""
    now = now or timezone.now()
    budget = _Budget(seconds)
    hosts = list(DockerHost.objects.order_by("pk").values_list("pk", flat=True))
    pruned = Pruned()
    pruned.poll_runs = _poll_runs(now, budget)
    pruned.risk_samples = _risk_samples(now, hosts, budget)
    pruned.snapshots = _snapshots(now, budget)
    pruned.events = _events(now, budget)
    pruned.findings = _resolved_findings(now, budget)
    pruned.finished = budget.left
    return pruned


# --- batches ------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _delete(model: type[models.Model], ids: Sequence[int]) -> int:
    """One short transaction. Relations set to NULL (events and samples of a poll run,
    poll runs of a snapshot) are updated by Django in the same one."""
    with transaction.atomic():
        _total, per_model = model.objects.filter(pk__in=ids).delete()
    return per_model.get(model._meta.label, 0)


def _delete_ids(model: type[models.Model], ids: Sequence[int], budget: _Budget) -> tuple[int, bool]:
    """Delete ``ids`` a batch at a time; returns how many, and whether all were done."""
    deleted = 0
    for chunk in _chunks(ids, settings.RETENTION_BATCH):
        if not budget.left:
            return deleted, False
        deleted += _delete(model, chunk)
    return deleted, True


def _delete_while(model: type[models.Model], select: Callable[[], models.QuerySet], budget: _Budget) -> int:
    """Delete what ``select`` picks (ids), a batch at a time, until it picks nothing."""
    deleted = 0
    while budget.left:
        with transaction.atomic():
            ids = list(select()[: settings.RETENTION_BATCH])
            if not ids:
                break
            deleted += model.objects.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
    return deleted


def _slices(name: str, until: datetime, first: Callable[[], datetime | None], budget: _Budget) -> Iterator[tuple[datetime, datetime]]:
    """Day-long windows from where pass ``name`` got to up to ``until``; each one's mark
    moves when the caller asks for the next (so a window cut short is done again)."""
    start = RetentionMark.get(name)
    if start is None:
        oldest = first()
        if oldest is None:
            RetentionMark.move(name, until)
            return
        start = oldest.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while start < until and budget.left:
        end = min(start + SLICE, until)
        yield start, end
        if not budget.left:
            return
        RetentionMark.move(name, end)
        start = end


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


# --- the policies -----------------------------------------------------------------------------


def _poll_runs(now: datetime, budget: _Budget) -> int:
    if not settings.RETENTION_POLL_DAYS:
        return 0
    cutoff = now - timedelta(days=settings.RETENTION_POLL_DAYS)
    # SKIP LOCKED: a run a poll is still writing (one left RUNNING that long) is not waited for.
    return _delete_while(
        PollRun, lambda: PollRun.objects.started_before(cutoff).order_by("started_at").select_for_update(skip_locked=True).values_list("pk", flat=True), budget
    )


def _risk_samples(now: datetime, hosts: list[int], budget: _Budget) -> int:
    deleted = 0
    if settings.RETENTION_SAMPLE_DAYS:
        cutoff = now - timedelta(days=settings.RETENTION_SAMPLE_DAYS)
        for chunk in _chunks(hosts, HOST_CHUNK):
            # Host ids listed, so each host's (host, at) index range is read from its start.
            deleted += _delete_while(
                RiskSample, lambda chunk=chunk: RiskSample.objects.filter(host_id__in=chunk, at__lt=cutoff).values_list("pk", flat=True), budget
            )
    oldest = lambda: RiskSample.objects.aggregate(at=Min("at"))["at"]  # noqa: E731 - read once, on the first run only
    for name, days, bucket in (
        ("risk-daily", settings.RETENTION_DAILY_AFTER_DAYS, "day"),
        ("risk-hourly", settings.RETENTION_HOURLY_AFTER_DAYS, "hour"),
    ):
        if not days:
            continue
        for start, end in _slices(name, _floor(now - timedelta(days=days), bucket), oldest, budget):
            for chunk in _chunks(hosts, HOST_CHUNK):
                ids = list(RiskSample.objects.filter(host_id__in=chunk, at__gte=start, at__lt=end).thinned_to(bucket))
                n, done = _delete_ids(RiskSample, ids, budget)
                deleted += n
                if not done:
                    return deleted
    return deleted


def _snapshots(now: datetime, budget: _Budget) -> int:
    """Look again at the hosts that stored a snapshot since the last pass (their last N
    moved) and at those whose snapshots aged past the daily window."""
    keep, days = settings.RETENTION_SNAPSHOTS, settings.RETENTION_SNAPSHOT_DAYS
    daily_since = now - timedelta(days=days) if days else datetime.min.replace(tzinfo=UTC)
    oldest = lambda: Snapshot.objects.aggregate(at=Min("taken_at"))["at"]  # noqa: E731
    deleted = 0
    for name, until in (("snapshots", now - SNAPSHOT_MARGIN), ("snapshots-aged", daily_since if days else None)):
        if until is None:
            continue
        for start, end in _slices(name, until, oldest, budget):
            touched = list(Snapshot.objects.filter(taken_at__gte=start, taken_at__lt=end).order_by().values_list("host_id", flat=True).distinct())
            for chunk in _chunks(touched, HOST_CHUNK):
                ids = list(Snapshot.objects.filter(host_id__in=chunk).beyond_retention(keep_last=keep, daily_since=daily_since))
                n, done = _delete_ids(Snapshot, ids, budget)
                deleted += n
                if not done:
                    return deleted
    return deleted


def _events(now: datetime, budget: _Budget) -> int:
    if not settings.RETENTION_EVENT_DAYS:
        return 0
    until = _floor(now - timedelta(days=settings.RETENTION_EVENT_DAYS), "day")
    oldest = lambda: FindingEvent.objects.aggregate(at=Min("at"))["at"]  # noqa: E731
    deleted = 0
    for start, end in _slices("events", until, oldest, budget):
        # Events are append-only: no poll ever holds one, nothing to lock.
        deleted += _delete_while(
            FindingEvent, lambda start=start, end=end: FindingEvent.objects.filter(at__gte=start, at__lt=end).superseded().values_list("pk", flat=True), budget
        )
    return deleted


def _resolved_findings(now: datetime, budget: _Budget) -> int:
    if not settings.RETENTION_RESOLVED_DAYS:
        return 0
    cutoff = now - timedelta(days=settings.RETENTION_RESOLVED_DAYS)
    deleted = 0
    while budget.left:
        with transaction.atomic():
            candidates = list(Finding.objects.resolved_before(cutoff).order_by("resolved_at").values_list("pk", "host_id")[: settings.RETENTION_BATCH])
            if not candidates:
                break
            # A poll reconciles a host's findings under its lease (its running PollRun): a
            # finding it is about to reopen must not vanish under it. Hosts no poll holds are
            # locked for the length of this batch (apply_snapshot locks the host row too, and
            # waits those milliseconds); held ones are skipped.
            hosts = {host for _pk, host in candidates}
            free = set(
                DockerHost.objects.filter(pk__in=hosts)
                .exclude(pk__in=PollRun.objects.holding(list(hosts), now).values("host_id"))
                .select_for_update(no_key=True, skip_locked=True)
                .values_list("pk", flat=True)
            )
            doomed = [pk for pk, host in candidates if host in free]
            if not doomed:
                break  # what is left belongs to hosts being polled: the next run
            deleted += Finding.objects.filter(pk__in=doomed).delete()[1].get(Finding._meta.label, 0)
    return deleted
