"""Who watches which host's event stream, and where each stream resumes.

State and decisions only: the streams themselves are ``posture/watch/``. Hosts are
shared out among ``manage.py watch`` processes by a lease per host (a ``HostWatch``
row: holder and expiry), claimed and renewed with conditional UPDATEs, like the poll
lease on ``DockerHost``. Each process keeps a ``Watcher`` heartbeat row so the others
can count it when they work out a fair share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .hosts import DockerHost


class Watcher(models.Model):
    """A running watcher process, as seen by the others."""

    name = models.CharField(max_length=100, unique=True)
    started_at = models.DateTimeField()
    # Renewed every cycle; a watcher not seen for one lease is dead and no longer counted.
    seen_at = models.DateTimeField()
    hosts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def heartbeat(cls, name: str, now: datetime, lease: timedelta, hosts: int) -> int:
        """Say this watcher is alive, forget the dead ones, and return how many are alive (at least 1)."""
        if not cls.objects.filter(name=name).update(seen_at=now, hosts=hosts):
            cls.objects.update_or_create(name=name, defaults={"started_at": now, "seen_at": now, "hosts": hosts})
        cls.objects.filter(seen_at__lt=now - lease).delete()
        return max(1, cls.objects.filter(seen_at__gte=now - lease).count())

    @classmethod
    def leave(cls, name: str) -> None:
        cls.objects.filter(name=name).delete()


class HostWatchQuerySet(models.QuerySet):
    def free(self, now: datetime) -> HostWatchQuerySet:
        return self.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))

    def held_by(self, watcher: str) -> HostWatchQuerySet:
        return self.filter(watcher=watcher)

    def ensure_rows(self) -> int:
        """A row for every enabled host, so that each can be claimed with an UPDATE.
        Hosts are added by forms, commands and the simulator alike; the watcher fills in."""
        missing = list(DockerHost.objects.filter(enabled=True, watch__isnull=True).values_list("pk", flat=True))
        self.bulk_create([HostWatch(host_id=pk) for pk in missing], ignore_conflicts=True)
        return len(missing)

    def renew(self, watcher: str, until: datetime) -> int:
        """Extend every lease ``watcher`` still holds, in one statement."""
        return self.held_by(watcher).update(lease_until=until)

    def claim(self, watcher: str, count: int, now: datetime, until: datetime) -> dict[int, bool]:
        """Take up to ``count`` free leases of enabled hosts. The free condition is
        repeated in the UPDATE itself, so a row another watcher took first is skipped.

        Returns the hosts taken, each with whether its last lease had run out rather than
        been given back: a watcher that dies cannot say what it had not yet seen.
        """
        if count <= 0:
            return {}
        candidates = dict(self.free(now).filter(host__enabled=True).order_by("host_id").values_list("host_id", "lease_until")[:count])
        if not candidates:
            return {}
        self.free(now).filter(host_id__in=list(candidates)).update(watcher=watcher, lease_until=until, connected_at=None, error="")
        taken = self.held_by(watcher).filter(host_id__in=list(candidates), lease_until=until).values_list("host_id", flat=True)
        return {pk: candidates[pk] is not None for pk in taken}

    def release(self, watcher: str, host_ids: Iterable[int] | None = None) -> int:
        """Give leases back so another watcher can take them at once; only our own."""
        qs = self.held_by(watcher)
        if host_ids is not None:
            qs = qs.filter(host_id__in=list(host_ids))
        return qs.update(watcher="", lease_until=None, connected_at=None)


class HostWatch(models.Model):
    """One host's event stream: who holds it, whether it is connected, where it resumes."""

    host = models.OneToOneField(DockerHost, primary_key=True, on_delete=models.CASCADE, related_name="watch")
    watcher = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # When the current stream opened; None while (re)connecting.
    connected_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Where a new stream resumes: events strictly after this engine time (ns) are
    # replayed with ``since``. The time of the last event whose poll was enqueued, or
    # the engine's clock when watching began.
    since_nano = models.BigIntegerField(null=True, blank=True)
    # When the last relevant event arrived, by the watcher's clock (shown on the host page).
    last_event_at = models.DateTimeField(null=True, blank=True)

    objects = HostWatchQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["watcher"], name="hostwatch_watcher")]  # renew() and release() each cycle

    def __str__(self) -> str:
        return f"{self.host_id} watched by {self.watcher or 'nobody'}"

    @property
    def is_held(self) -> bool:
        return bool(self.watcher) and self.lease_until is not None and self.lease_until > timezone.now()

    @property
    def is_live(self) -> bool:
        """A watcher holds the host and its event stream is open."""
        return self.is_held and self.connected_at is not None


def fair_share(hosts: int, watchers: int, limit: int) -> int:
    """How many hosts one of ``watchers`` live processes should hold."""
    return min(limit, math.ceil(hosts / max(1, watchers)))
