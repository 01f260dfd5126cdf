"""Model rows for page, command and report tests, built directly: no engine, no worker.

Findings carry what the rules really conclude: ``polled(...)`` runs the rule catalog on
a hand-built snapshot (``tests.builders``) and writes one poll's worth of rows (the
poll run, the stored snapshot, inventory, findings with their ``opened`` events and a
risk sample) the way a poll leaves them, as healthchecks' ``hc/front/tests`` build
Checks and Flips::

    host = polled("web-1", snapshot([container("pg", ports=[port(5432, 15832)])]))
    pg = host.findings.get(rule_id="port-sensitive-service-exposed")

Single rows: ``host``, ``poll_run``, ``finding``, ``event``, ``risk_sample``,
``containers``, ``acceptance``, ``report``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from posture.collector.snapshot import HostSnapshot
from posture.models import (
    ContainerRecord,
    DockerHost,
    EventKind,
    Finding,
    FindingEvent,
    FindingStatus,
    HostStatus,
    PollRun,
    PollStatus,
    Report,
    ReportStatus,
    RiskException,
    RiskSample,
    Snapshot,
)
from posture.models.findings import plain_json
from posture.rules import FindingSpec, evaluate

from .builders import compose, container, port, snapshot

# One of everything a page shows: a database on every interface (critical), a
# host-network proxy (high), a compose service with an added capability, the daemon's defaults.
EXPOSED = snapshot(
    [
        container("pg", ports=[port(5432, 15832)], labels={"owner": "<script>alert('x')</script>"}),
        container("edge", network_mode="host", exposed_ports=("80/tcp",)),
        container("shop-cache-1", ports=[port(6379, 16379, ip="127.0.0.1")], cap_add=("NET_RAW",), labels=compose("shop", "cache")),
    ]
)


def host(name: str = "web-1", *, polled_at: datetime | None = None, **fields: Any) -> DockerHost:
    """A registered host; by default one that was polled fine a minute ago."""
    at = polled_at or timezone.now() - timedelta(minutes=1)
    values: dict[str, Any] = {
        "url": f"unix:///run/posture-test/{name}.sock",
        "last_status": HostStatus.OK,
        "last_poll_at": at,
        "last_success_at": at,
        "next_poll_at": at + timedelta(seconds=300),
    }
    values.update(fields)
    return DockerHost.objects.create(name=name, **values)


def poll_run(host: DockerHost, *, at: datetime | None = None, status: str = PollStatus.OK, snap: HostSnapshot | None = None, **fields: Any) -> PollRun:
    """A finished poll run (``status=RUNNING`` for one still going); with ``snap`` it also
    stores the snapshot and makes it the host's current one."""
    at = at or host.last_poll_at or timezone.now()
    values: dict[str, Any] = {"token": f"task-{at.timestamp():.6f}", "started_at": at, "status": status}
    if status != PollStatus.RUNNING:
        values["finished_at"] = at + timedelta(milliseconds=180)
    if snap is not None:
        stored = Snapshot.objects.create(host=host, taken_at=at, digest=snap.digest(), data=snap.to_dict())
        values |= {"snapshot": stored, "snapshot_changed": True, "containers": len(snap.containers), "api_calls": 4 + len(snap.containers)}
        DockerHost.objects.filter(pk=host.pk).update(snapshot=stored)
        host.snapshot = stored
    values.update(fields)
    return PollRun.objects.create(host=host, **values)


def finding(host: DockerHost, spec: FindingSpec, *, poll: PollRun | None = None, at: datetime | None = None, **fields: Any) -> Finding:
    """The row reconciliation writes for a new ``spec``, with its ``opened`` event."""
    at = at or (poll.started_at if poll else timezone.now())
    values: dict[str, Any] = {
        "fingerprint": spec.fingerprint,
        "rule_id": spec.rule_id,
        "cis": spec.cis or "",
        "severity": spec.severity.value,
        "subject_type": spec.subject_type.value,
        "subject_key": spec.subject_key,
        "subject_name": spec.subject_name,
        "item_key": spec.key,
        "title": spec.title,
        "evidence": plain_json(spec.evidence),
        "remediation": spec.remediation,
        "running": spec.running,
        "exposed": spec.exposed,
        "status": FindingStatus.OPEN,
        "first_seen": at,
        "last_seen": at,
    }
    values.update(fields)
    row = Finding.objects.create(host=host, **values)
    event(row, EventKind.OPENED, poll=poll, at=at)
    return row


def event(finding: Finding, kind: str, *, poll: PollRun | None = None, at: datetime | None = None, **fields: Any) -> FindingEvent:
    return FindingEvent.objects.create(finding=finding, kind=kind, poll=poll, at=at or timezone.now(), **fields)


def containers(host: DockerHost, snap: HostSnapshot) -> list[ContainerRecord]:
    """The host page's inventory rows for ``snap`` (containers, their ports, networks),
    written as a poll writes them."""
    ContainerRecord.objects.sync_for(host, snap)
    return list(ContainerRecord.objects.filter(host=host).order_by("pk"))


def risk_sample(host: DockerHost, *, poll: PollRun | None = None, at: datetime | None = None) -> RiskSample:
    """Score the host's findings as a poll does, and keep the score on the host row."""
    sample = RiskSample.record(host, poll, at or timezone.now())
    host.save(update_fields=DockerHost.SUMMARY_FIELDS)
    return sample


def polled(name: str = "web-1", snap: HostSnapshot = EXPOSED, *, at: datetime | None = None, **fields: Any) -> DockerHost:
    """A host after one good poll of ``snap``: every row the pages read."""
    row = host(name, polled_at=at, **fields)
    run = poll_run(row, snap=snap, at=row.last_poll_at)
    specs = evaluate(snap, host_name=name)
    for spec in specs:
        finding(row, spec, poll=run)
    containers(row, snap)
    sample = risk_sample(row, poll=run, at=run.started_at)
    PollRun.objects.filter(pk=run.pk).update(findings_open=sample.open_count, opened=len(specs))
    row.refresh_from_db()
    return row


def polled_hosts(names: Iterable[str], snap: HostSnapshot = EXPOSED, **fields: Any) -> list[DockerHost]:
    return [polled(name, snap, **fields) for name in names]


def acceptance(finding: Finding, by: Any, *, days: int = 10, justification: str = "Behind the VPN firewall; ticket SEC-42") -> RiskException:
    """An accepted risk as the finding page leaves it: an exception scoped to the finding."""
    exception = finding.accept(by=by, until=timezone.now() + timedelta(days=days), justification=justification)
    finding.refresh_from_db()
    return exception


def report(title: str = "Weekly posture", *, days: int = 7, status: str = ReportStatus.QUEUED, **fields: Any) -> Report:
    end = timezone.now()
    return Report.objects.create(title=title, period_start=end - timedelta(days=days), period_end=end, status=status, **fields)
