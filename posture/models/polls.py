"""Poll runs, and the poll lease they carry.

A host's lease *is* its running poll run: at most one run per host may be RUNNING (a
partial unique constraint), and a running run holds the host while its ``lease_until``
lies ahead. The worker running the poll renews it (``polling.Heartbeat``) while it
works, so a lease is short whatever the poll's time limits: a run whose worker died
stops being renewed, and its host is free again within ``POSTURE_POLL_LEASE`` seconds.
``sweep()`` then marks such runs lost, so no run stays "running".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from .choices import PollStatus

LOST = "the worker running this poll stopped before it finished (killed, restarted, or past its time limit); the host was freed for the next poll"


def lease_length() -> timedelta:
    return timedelta(seconds=settings.POLL_LEASE_SECONDS)


class PollRunQuerySet(models.QuerySet):
    def running(self) -> PollRunQuerySet:
        return self.filter(status=PollStatus.RUNNING)

    def started_before(self, cutoff: datetime) -> PollRunQuerySet:
        return self.filter(started_at__lt=cutoff)

    def holding(self, host_ids: list[int], now: datetime | None = None) -> PollRunQuerySet:
        """The runs that hold a lease on one of ``host_ids`` now (a poll of them is running)."""
        return self.running().filter(host_id__in=host_ids, lease_until__gte=now or timezone.now())

    def expired(self, now: datetime | None = None) -> PollRunQuerySet:
        """Running runs nobody renews any more: their worker is gone."""
        return self.running().filter(lease_until__lt=now or timezone.now())

    def sweep(self, now: datetime | None = None) -> int:
        """Mark runs whose lease ran out as lost; returns how many."""
        now = now or timezone.now()
        return self.expired(now).update(status=PollStatus.LOST, finished_at=now, lease_until=None, error=LOST)


class PollRun(models.Model):
    host = models.ForeignKey("DockerHost", on_delete=models.CASCADE, related_name="polls")
    token = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # When a scheduled poll was due: started_at - due_at is its dispatch lag.
    due_at = models.DateTimeField(null=True, blank=True)
    # The lease: a RUNNING run holds its host until this passes; renewed while it works.
    lease_until = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=PollStatus, default=PollStatus.RUNNING)
    error = models.TextField(blank=True)
    api_calls = models.PositiveIntegerField(default=0)
    inspects_reused = models.PositiveIntegerField(default=0)
    containers = models.PositiveIntegerField(default=0)
    findings_open = models.PositiveIntegerField(default=0)
    opened = models.PositiveIntegerField(default=0)
    resolved = models.PositiveIntegerField(default=0)
    reopened = models.PositiveIntegerField(default=0)
    snapshot_changed = models.BooleanField(default=False)
    snapshot = models.ForeignKey("Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="polls")
    # rule id → the error it raised on this poll; those rules' findings were left as they were.
    rule_errors = models.JSONField(default=dict, blank=True)

    objects = PollRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["host", "-started_at"], name="poll_host_recent"),  # host page poll history
            models.Index(fields=["lease_until"], condition=Q(status=PollStatus.RUNNING), name="poll_running"),  # sweep()
            models.Index(fields=["started_at"], name="poll_started"),  # retention: PollRunQuerySet.started_before()
        ]
        # The lease: one running poll per host (also serves start()'s look-up of a stale one).
        constraints = [models.UniqueConstraint(fields=["host"], condition=Q(status=PollStatus.RUNNING), name="one_running_poll_per_host")]

    def __str__(self) -> str:
        return f"{self.host} @ {self.started_at:%Y-%m-%d %H:%M:%S}"

    retryable = False  # set by the poll on failure, not stored

    @classmethod
    def start(cls, host: models.Model, token: str, *, due_at: datetime | None = None, interrupted: str = "") -> PollRun | None:
        """Take ``host``'s lease by starting its running run; None while another poll holds it.

        A run this very task left running (a re-delivery: same token) is ended first,
        as failed with ``interrupted`` when its cause is known, else as lost; so is a run
        whose lease ran out.
        """
        now = timezone.now()
        stale = cls.objects.running().filter(host=host).filter(Q(lease_until__lt=now) | Q(token=token))
        if interrupted:
            stale.filter(token=token).update(status=PollStatus.FAILED, finished_at=now, lease_until=None, error=interrupted)
        stale.update(status=PollStatus.LOST, finished_at=now, lease_until=None, error=LOST)
        try:
            with transaction.atomic():
                return cls.objects.create(host=host, token=token, started_at=now, due_at=due_at, lease_until=now + lease_length())
        except IntegrityError:
            return None  # another poll of this host is running

    @classmethod
    def begin(cls, host: models.Model, token: str) -> PollRun:
        """``start()`` for callers that know the host is free (benchmarks, tests)."""
        run = cls.start(host, token)
        if run is None:
            raise RuntimeError(f"{host} is being polled")
        return run

    def renew(self, now: datetime | None = None) -> bool:
        """Extend the lease; False once the run is no longer running (swept, or finished)."""
        until = (now or timezone.now()) + lease_length()
        return PollRun.objects.filter(pk=self.pk, status=PollStatus.RUNNING).update(lease_until=until) == 1

    @property
    def succeeded(self) -> bool:
        return self.status == PollStatus.OK

    def finish(self, status: PollStatus, *, at: datetime, error: str = "") -> None:
        """End the run, releasing the host's lease."""
        self.status, self.error, self.finished_at, self.lease_until = status, error, at, None
        self.save()

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None

    @property
    def lag(self) -> timedelta | None:
        """How long after it was due this poll started (scheduled polls only)."""
        return self.started_at - self.due_at if self.due_at else None
