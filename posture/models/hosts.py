"""Registered engines, their polls and the snapshots those polls took.

State and decisions only: talking to an engine is ``posture/polling.py``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber, TruncDay
from django.utils import timezone

from posture import risk
from posture.collector import HostSnapshot, InvalidEngineURL, Unchanged, parse_engine_url
from posture.rules import Evaluation

from .audit import AuditAction, AuditEntry
from .choices import EventKind, HostStatus, PollStatus, Severity
from .fields import EncryptedTextField
from .findings import Finding, RiskSample
from .inventory import ContainerRecord
from .polls import PollRun
from .querysets import FAILING_QUEUE, POLLS_QUEUE, HostQuerySet

# The host's open findings per severity, kept on the row (``DockerHost.set_open_counts``):
# the fleet page, its totals and its severity filter read them instead of counting findings.
OPEN_COUNT_FIELDS = tuple(f"open_{s}" for s in Severity)

log = logging.getLogger(__name__)
# A risk sample is written when the score changes, and at least this often while a host is polled.
RISK_SAMPLE_EVERY = timedelta(hours=1)


class LeaseLost(RuntimeError):
    """The poll's lease ran out (its heartbeat could not renew it) before the result was stored."""


name_validator = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", "Use letters, digits, dots, dashes and underscores, starting with a letter or digit.")


def validate_engine(url: str, *, insecure: bool, tls: bool, client_cert: bool, ssh_key: bool) -> str:
    """The one check of a host's connection settings; returns the normalised URL."""
    try:
        parsed = parse_engine_url(url)
    except InvalidEngineURL as exc:
        raise ValidationError({"url": str(exc)}) from None
    if parsed.scheme == "tcp" and not tls and not insecure:
        raise ValidationError(
            {
                "url": "plain tcp:// without TLS gives root on the host to anyone on the network: upload the CA and client certificate, or tick 'insecure' to accept that (it is reported as a critical finding)."
            }
        )
    if (tls or client_cert) and parsed.scheme != "tcp":
        raise ValidationError({"tls_ca": "TLS certificates apply to tcp:// URLs only."})
    if client_cert and not tls:
        raise ValidationError({"tls_ca": "a client certificate needs the CA certificate that signed the engine's server certificate."})
    if ssh_key and parsed.scheme != "ssh":
        raise ValidationError({"ssh_key": "an SSH key applies to ssh:// URLs only."})
    return str(parsed)


class DockerHost(models.Model):
    # A host with no good poll for this many intervals is shown as stale.
    STALE_AFTER_INTERVALS = 3

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    url = models.CharField("engine URL", max_length=300, help_text="unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host")
    insecure = models.BooleanField(default=False, help_text="Allow plain tcp:// without TLS (reported as critical).")
    poll_interval = models.PositiveIntegerField(
        default=settings.DEFAULT_POLL_INTERVAL, validators=[MinValueValidator(10), MaxValueValidator(7 * 86400)], help_text="Seconds between polls."
    )
    labels = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    host_listeners = models.BooleanField(
        "read host listeners",
        default=False,
        help_text="Also read the host's listening sockets (ssh:// hosts, or unix:// on this machine) and, over SSH, its firewall rules, read-only.",
    )
    # Write-only credentials, Fernet ciphertext at rest.
    tls_ca = EncryptedTextField(blank=True)
    tls_cert = EncryptedTextField(blank=True)
    tls_key = EncryptedTextField(blank=True)
    ssh_key = EncryptedTextField(blank=True)
    # Public host keys pinned on first ssh connection.
    ssh_known_hosts = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the next poll is due: moved on by dispatch (``claim_due``), pushed out by a
    # failure's back-off ("next try at" while ``failures`` > 0).
    next_poll_at = models.DateTimeField(null=True, blank=True)
    # Consecutive failed polls: drives the back-off and the failing hosts' own queue.
    failures = models.PositiveIntegerField(default=0)
    # When the last finished poll (good or failed) started; a queued poll requested
    # before it is redundant.
    last_poll_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=20, choices=HostStatus, default=HostStatus.NEW)
    last_error = models.TextField(blank=True)
    risk_score = models.PositiveSmallIntegerField(default=0)
    risk_breakdown = models.JSONField(default=list, blank=True)
    # What ranks hosts with equal scores (posture/risk.py), kept with the score.
    risk_points = models.FloatField(default=0)
    risk_exposed_critical = models.PositiveIntegerField(default=0)
    risk_critical = models.PositiveIntegerField(default=0)
    risk_high = models.PositiveIntegerField(default=0)
    # When the last risk sample was written: a sample is due when the score changes or hourly.
    risk_sampled_at = models.DateTimeField(null=True, blank=True)
    # Open findings per severity (OPEN_COUNT_FIELDS) and in all, derived with the risk score.
    open_critical = models.PositiveIntegerField(default=0)
    open_high = models.PositiveIntegerField(default=0)
    open_medium = models.PositiveIntegerField(default=0)
    open_low = models.PositiveIntegerField(default=0)
    open_info = models.PositiveIntegerField(default=0)
    open_total = models.PositiveIntegerField(default=0)
    # When the host turns stale without a good poll: (last good poll, or registration) +
    # STALE_AFTER_INTERVALS × interval. Derived in save(), stored so that the stale and ok
    # filters are one indexed comparison with "now" whatever the fleet's intervals.
    stale_at = models.DateTimeField(null=True, blank=True)
    snapshot = models.ForeignKey("Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # What the host's findings were concluded from (``polling.evaluation_key``: snapshot
    # digest, rule code, host name); empty when some rule failed. A poll whose key
    # matches changes nothing but the poll record and the host's status.
    evaluated = models.CharField(max_length=64, blank=True)
    # The hash of the engine's list answers at the last good poll (``HostSnapshot.answers``):
    # the same answers again are the same snapshot, read without its inspects.
    answers_digest = models.CharField(max_length=64, blank=True)

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["enabled", "next_poll_at"], name="host_due"),  # due_for_poll()
            # HostQuerySet.with_display_status(): ?status=stale and ?status=ok|new on the fleet page.
            models.Index(fields=["last_status", "stale_at"], name="host_status_stale"),
            # The fleet page's default order (querysets.RISK_ORDER), read a page at a time from the index.
            models.Index(fields=["-risk_score", "-risk_exposed_critical", "-risk_critical", "-risk_high", "-risk_points", "name"], name="host_risk_order"),
        ]
        permissions = [("poll_host", "Can trigger a poll"), ("manage_hosts", "Can register and edit hosts")]

    # Written together whenever the host's findings are scored (RiskSample.record sets them
    # all): the score and what ranks equal scores, when it was sampled, the open counts.
    RISK_FIELDS = ("risk_score", "risk_breakdown", "risk_points", "risk_exposed_critical", "risk_critical", "risk_high", "risk_sampled_at")
    SUMMARY_FIELDS = (*RISK_FIELDS, *OPEN_COUNT_FIELDS, "open_total")

    def __str__(self) -> str:
        return self.name

    def set_risk(self, result: risk.Risk) -> None:
        self.risk_score, self.risk_breakdown, self.risk_points = result.score, result.as_json(), result.points
        self.risk_exposed_critical, self.risk_critical, self.risk_high = result.exposed_critical, result.critical, result.high

    @property
    def poll_queue(self) -> str:
        """Where this host's polls go: failing hosts have a queue (and workers) of their own,
        so they cannot take the workers good hosts need. Every enqueue of a poll uses it."""
        return FAILING_QUEUE if self.failures else POLLS_QUEUE

    def save(self, *args: Any, **kwargs: Any) -> None:
        # stale_at follows the fields it is derived from: a save that writes any of them writes it too.
        self.stale_at = self.stale_after()
        fields = kwargs.get("update_fields")
        if fields is not None and {"last_success_at", "poll_interval", "created_at"} & set(fields):
            kwargs["update_fields"] = {*fields, "stale_at"}
        super().save(*args, **kwargs)

    def stale_after(self) -> datetime:
        since = self.last_success_at or self.created_at or timezone.now()
        return since + timedelta(seconds=self.STALE_AFTER_INTERVALS * self.poll_interval)

    def set_open_counts(self, severities: Iterable[str]) -> None:
        """Count open findings from their severities, on this instance; the caller saves
        ``SUMMARY_FIELDS``. Called only by ``RiskSample.record``, which every change of a
        finding's status goes through (a poll, an acceptance, its expiry), so the counts
        move with the score."""
        counts = Counter(severities)
        for severity, field in zip(Severity, OPEN_COUNT_FIELDS, strict=True):
            setattr(self, field, counts[severity.value])
        self.open_total = sum(counts.values())

    def clean(self) -> None:
        self.url = validate_engine(
            self.url, insecure=self.insecure, tls=bool(self.tls_ca), client_cert=bool(self.tls_cert or self.tls_key), ssh_key=bool(self.ssh_key)
        )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValidationError({"tls_cert": "upload the client certificate and its key together."})

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def is_stale(self) -> bool:
        """No good poll for ``STALE_AFTER_INTERVALS`` intervals (or never, that long after registration).

        Read from ``stale_at``, as the fleet filter reads it, so the two never disagree."""
        return self.stale_at is not None and timezone.now() > self.stale_at

    @property
    def display_status(self) -> HostStatus:
        """What the pages, filters and commands show: the stored status, or STALE."""
        status = HostStatus(self.last_status)
        if status in (HostStatus.OK, HostStatus.NEW) and self.is_stale:
            return HostStatus.STALE
        return status

    # --- registration -------------------------------------------------------------

    def register(self, *, actor: Any, changed: list[str] | None = None) -> None:
        """Validate and save a new or edited host with its audit entry, in one transaction.

        The one way hosts are added or changed: the host form, ``hosts add`` and
        ``bootstrap`` all come here.
        """
        adding = self._state.adding
        self.full_clean()
        with transaction.atomic():
            self.save()
            if adding:
                AuditEntry.log(actor, AuditAction.HOST_ADD, self, url=self.url)
            else:
                AuditEntry.log(actor, AuditAction.HOST_EDIT, self, url=self.url, fields=sorted(changed or []))

    def remove(self, *, actor: Any) -> None:
        """Delete the host and its history, audited in the same transaction."""
        with transaction.atomic():
            AuditEntry.log(actor, AuditAction.HOST_REMOVE, self, url=self.url)
            self.delete()

    # --- scheduling -------------------------------------------------------------------

    @property
    def next_try_at(self) -> datetime | None:
        """When a failing host is tried again (its back-off), for the host page."""
        return self.next_poll_at if self.failures else None

    def polled_since(self, moment: datetime) -> bool:
        """A poll started at or after ``moment`` has finished: a poll requested then is redundant."""
        return self.last_poll_at is not None and self.last_poll_at >= moment

    def backoff(self, *, transient: bool) -> timedelta:
        """The wait before trying a failing host again: doubling with each failure in a row,
        from ``POSTURE_POLL_RETRY_BASE`` (transient) or the interval (permanent), capped at
        ``POSTURE_POLL_BACKOFF_MAX`` or the interval, whichever is longer."""
        start = min(settings.POLL_RETRY_BASE, self.poll_interval) if transient else self.poll_interval
        cap = max(settings.POLL_BACKOFF_MAX, self.poll_interval)
        return timedelta(seconds=min(cap, start * 2 ** min(max(self.failures - 1, 0), 20)))

    # --- poll outcomes --------------------------------------------------------------

    def record_failure(self, run: PollRun, error: str, *, status: HostStatus, transient: bool = False) -> None:
        """A poll that produced no snapshot: the run and the host say why, and the host
        backs off. Releases the lease (the run ends)."""
        now = timezone.now()
        run.finish(PollStatus.FAILED, error=error, at=now)
        self.failures += 1
        self.last_poll_at, self.last_status, self.last_error = run.started_at, status, error
        self.next_poll_at = now + self.backoff(transient=transient)
        DockerHost.objects.filter(pk=self.pk).update(
            last_poll_at=self.last_poll_at, last_status=status, last_error=error, failures=self.failures, next_poll_at=self.next_poll_at
        )
        log.warning("poll of %s failed (%d in a row, next try at %s): %s", self.name, self.failures, self.next_poll_at, error)

    def _succeeded(self, run: PollRun) -> list[str]:
        """The host's fields after a good poll; returns their names for the UPDATE."""
        self.last_poll_at, self.last_success_at = run.started_at, run.finished_at
        self.last_status, self.last_error, self.failures = HostStatus.OK, "", 0
        return ["last_poll_at", "last_success_at", "last_status", "last_error", "failures"]

    def _pin(self, pinned_host_keys: str | None) -> list[str]:
        if pinned_host_keys is not None and pinned_host_keys.strip() != self.ssh_known_hosts.strip():
            # Trust on first use: the key the engine's ssh server showed is kept only
            # once a poll has read the engine through it.
            self.ssh_known_hosts = pinned_host_keys
            return ["ssh_known_hosts"]
        return []

    def record_unchanged(self, snap: HostSnapshot | Unchanged, run: PollRun, *, pinned_host_keys: str | None = None) -> None:
        """A good poll that found what the findings were concluded from: the run and the
        host's status only (and an hourly risk sample) — O(1) rows, whatever the host holds.
        Open findings' ``last_seen`` is the host's last good poll (``Finding.last_seen_at``)."""
        now = timezone.now()
        containers = snap.containers if isinstance(snap, Unchanged) else len(snap.containers)
        run.api_calls, run.inspects_reused, run.containers = snap.api_calls, snap.inspects_reused, containers
        run.snapshot_id, run.findings_open = self.snapshot_id, sum(int(item.get("count", 0)) for item in self.risk_breakdown)
        run.finish(PollStatus.OK, at=now)
        fields = self._succeeded(run) + self._pin(pinned_host_keys)
        if snap.answers != self.answers_digest:
            self.answers_digest = snap.answers
            fields.append("answers_digest")
        if RiskSample.due(self, now):
            RiskSample.repeat(self, run, now)
            fields.append("risk_sampled_at")
        self.save(update_fields=fields)

    def apply_snapshot(self, snap: HostSnapshot, evaluation: Evaluation, run: PollRun, *, key: str = "", pinned_host_keys: str | None = None) -> None:
        """Store one poll's result in one transaction: the snapshot and inventory when the
        digest changed (the inventory as a diff), reconciled findings with their events,
        a risk sample when the score changed (or hourly), the run and the host's status.

        ``key`` is the run's ``polling.evaluation_key``; kept when every rule concluded."""
        now = run.started_at
        with transaction.atomic():
            # The host's row lock orders two applies of one host; a run swept as lost
            # (its lease ran out) no longer speaks for the host.
            DockerHost.objects.select_for_update().filter(pk=self.pk).values_list("pk").first()
            if not PollRun.objects.filter(pk=run.pk, status=PollStatus.RUNNING).exists():
                raise LeaseLost(f"the poll's lease ran out before its result was stored (after {timezone.now() - now})")
            digest = snap.digest()
            if self.snapshot is None or self.snapshot.digest != digest:
                self.snapshot = Snapshot.objects.create(host=self, taken_at=now, digest=digest, data=snap.to_dict())
                run.snapshot_changed = True
                ContainerRecord.objects.sync_for(self, snap)
            run.snapshot = self.snapshot
            counts = Finding.objects.reconcile(self, evaluation, run, now)
            sampled = RiskSample.record(self, run, now, every=RISK_SAMPLE_EVERY)
            run.api_calls, run.inspects_reused, run.containers = snap.api_calls, snap.inspects_reused, len(snap.containers)
            run.opened, run.resolved, run.reopened = counts[EventKind.OPENED], counts[EventKind.RESOLVED], counts[EventKind.REOPENED]
            run.findings_open = sampled.open_count
            run.rule_errors = dict(evaluation.errors)
            run.finish(PollStatus.OK, at=timezone.now())
            self.evaluated, self.answers_digest = ("" if evaluation.errors else key), snap.answers
            fields = self._succeeded(run) + self._pin(pinned_host_keys)
            fields += ["snapshot", "evaluated", "answers_digest", *self.SUMMARY_FIELDS]
            self.save(update_fields=fields)

    def refresh_risk(self, poll: PollRun | None = None) -> None:
        RiskSample.record(self, poll, timezone.now())
        self.save(update_fields=self.SUMMARY_FIELDS)


class SnapshotQuerySet(models.QuerySet):
    def beyond_retention(self, *, keep_last: int, daily_since: datetime) -> list[int]:
        """Ids of these snapshots that retention drops: all but each host's last
        ``keep_last``, the last of each day since ``daily_since``, and the host's current one.

        Ranked over each host's whole history, so filter to the hosts to look at, not to rows.
        """
        ranked = self.annotate(
            recent=Window(RowNumber(), partition_by=F("host_id"), order_by=[F("taken_at").desc(), F("pk").desc()]),
            of_day=Window(RowNumber(), partition_by=[F("host_id"), TruncDay("taken_at", tzinfo=UTC)], order_by=[F("taken_at").desc(), F("pk").desc()]),
        ).filter(recent__gt=keep_last)
        # (A window may not be filtered with OR in SQL: the day test is made here.)
        doomed = [pk for pk, taken_at, of_day in ranked.values_list("pk", "taken_at", "of_day") if taken_at < daily_since or of_day > 1]
        current = set(DockerHost.objects.filter(snapshot_id__in=doomed).values_list("snapshot_id", flat=True))
        return [pk for pk in doomed if pk not in current]


class Snapshot(models.Model):
    """A host snapshot, stored when it differs from the previous one."""

    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="snapshots")
    taken_at = models.DateTimeField()
    digest = models.CharField(max_length=64)
    data = models.JSONField()

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["-taken_at"]
        # Retention: the hosts that stored a snapshot, or whose snapshots aged past the policy, since the last pass.
        indexes = [models.Index(fields=["taken_at"], name="snapshot_taken_at")]

    def snapshot(self) -> HostSnapshot:
        return HostSnapshot.from_dict(self.data)
