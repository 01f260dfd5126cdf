"""A fleet-sized database for benchmarks: ``build_fleet(hosts=10_000, containers=100_000,
findings=330_000, events=1_000_000)``.

Rows are written with PostgreSQL's COPY (batched ``executemany`` elsewhere), never through
the ORM one by one, so the full-size fleet loads in about a minute on 2 cores. The data is
deterministic for a seed and shaped like a real fleet: hosts labelled ``env`` / ``team`` /
``region``, compose projects with a few services each, images shared across hosts,
findings of the catalog's rules with their severities (most open, some resolved, some
accepted under exceptions scoped by rule and image), an event history and risk samples
for the trend charts. Host risk scores are computed with ``posture.risk`` from the
findings generated, so the fleet page ranks them as it would in production.

    python -m tests.bench_data --hosts 10000   # into DATABASE_URL's database (must be empty)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from posture import risk  # noqa: E402
from posture.models import ContainerRecord, DockerHost, Finding, FindingEvent, RiskException, RiskSample  # noqa: E402
from posture.models.hosts import OPEN_COUNT_FIELDS  # noqa: E402
from posture.rules import RULES, Severity, SubjectType  # noqa: E402

ENVS = ("prod",) * 5 + ("stage",) * 3 + ("dev",) * 2
TEAMS = ("payments", "search", "identity", "data", "edge", "mobile", "ml", "platform")
REGIONS = ("eu-west", "eu-central", "us-east", "us-west", "ap-south")
PROJECTS = ("shop", "billing", "auth", "search", "metrics", "cache", "ingest", "admin", "reports", "gateway", "chat", "media")
SERVICES = ("web", "api", "worker", "db", "cache", "proxy", "queue", "cron")
IMAGES = (
    "nginx:1.25",
    "nginx:1.27",
    "traefik:v3.0",
    "traefik:v2.11",
    "redis:7",
    "redis:6.2",
    "postgres:16",
    "postgres:13",
    "mysql:8.0",
    "rabbitmq:3-management",
    "grafana/grafana:10.4.2",
    "prom/prometheus:v2.51.0",
    "elasticsearch:8.13.0",
    "memcached:1.6",
    "busybox:1.36",
    *(f"registry.example.com/{team}/app-{n}:{tag}" for team in TEAMS for n in range(3) for tag in ("1.4.2", "1.5.0")),
)
CONTAINER_RULES = [r for r in RULES if r.subject is SubjectType.CONTAINER]
NETWORK_RULES = [r for r in RULES if r.subject is SubjectType.NETWORK]
DAEMON_RULES = [r for r in RULES if r.subject is SubjectType.DAEMON]


@dataclass
class Built:
    hosts: int = 0
    containers: int = 0
    findings: int = 0
    events: int = 0
    samples: int = 0
    exceptions: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


class _Table:
    """Rows for one table: COPY on PostgreSQL, batched INSERTs elsewhere."""

    def __init__(self, cursor: Any, table: str, columns: Sequence[str]) -> None:
        self.cursor, self.table, self.columns, self.batch = cursor, table, columns, []
        self.pg = connection.vendor == "postgresql"
        if self.pg:
            self._copy = cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN")
            self.copy = self._copy.__enter__()

    def row(self, values: Sequence[Any]) -> None:
        if self.pg:
            self.copy.write_row(values)
            return
        self.batch.append(values)
        if len(self.batch) >= 5000:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            marks = ", ".join(["%s"] * len(self.columns))
            self.cursor.executemany(f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({marks})", self.batch)
            self.batch = []

    def close(self) -> None:
        if self.pg:
            self._copy.__exit__(None, None, None)
        else:
            self.flush()


@contextmanager
def _table(table: str, columns: Sequence[str]) -> Iterator[_Table]:
    with connection.cursor() as wrapper:
        raw = wrapper.cursor if connection.vendor == "postgresql" else wrapper
        t = _Table(raw, table, columns)
        try:
            yield t
        finally:
            t.close()


def _next_id(model: Any) -> int:
    last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
    return (last or 0) + 1


def _reset_sequences(models: Iterable[Any]) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 1))")


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` spread over ``parts`` unevenly (some hosts are busier), summing exactly."""
    weights = [rng.paretovariate(2.5) for _ in range(parts)]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in range(total - sum(counts)):
        counts[i % parts] += 1
    return counts


def build_fleet(
    hosts: int = 10_000,
    containers: int = 100_000,
    findings: int = 330_000,
    events: int = 1_000_000,
    samples_per_host: int = 30,
    exceptions: int = 12,
    seed: int = 13,
    now: datetime | None = None,
) -> Built:
    """Write a fleet into the current database (expected empty of hosts) in one transaction,
    then VACUUM ANALYZE it."""
    started = time.perf_counter()
    with transaction.atomic():
        built = _build(hosts, containers, findings, events, samples_per_host, exceptions, seed, now)
    if connection.vendor == "postgresql" and not connection.in_atomic_block:  # a test's transaction cannot VACUUM
        # The steady state autovacuum keeps: statistics, and a visibility map for index-only scans.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    built.seconds = round(time.perf_counter() - started, 1)
    return built


def _build(hosts: int, containers: int, findings: int, events: int, samples_per_host: int, exceptions: int, seed: int, now: datetime | None) -> Built:
    rng = random.Random(seed)
    now = now or timezone.now()
    built = Built()
    host_id0, ctr_id0, finding_id0, exc_id0 = _next_id(DockerHost), _next_id(ContainerRecord), _next_id(Finding), _next_id(RiskException)

    # Exceptions scoped by rule and image on env=dev hosts: the findings they cover are accepted.
    exception_scopes = {}
    with _table(
        "posture_riskexception",
        ("id", "rule_id", "max_severity", "labels", "image", "project", "name", "justification", "created_at", "expires_at", "status"),
    ) as t:
        for n in range(exceptions):
            rule, image = rng.choice(CONTAINER_RULES), rng.choice(IMAGES)
            exception_scopes[(rule.id, image)] = exc_id0 + n
            until = now + timedelta(days=rng.randint(5, 300))
            t.row((exc_id0 + n, rule.id, "", json.dumps({"env": "dev"}), image, "", "", f"Benchmark exception {n}: reviewed, lab only", now, until, "active"))
            built.exceptions += 1

    host_rows = []
    for i in range(hosts):
        labels = {"env": rng.choice(ENVS), "team": rng.choice(TEAMS), "region": rng.choice(REGIONS)}
        host_rows.append((host_id0 + i, f"host-{i:05d}", labels))
    per_host_containers = _split(containers, hosts, rng)
    per_host_findings = _split(findings, hosts, rng)

    # Containers first (one COPY at a time per connection), kept in memory for the findings.
    boxes_of: dict[int, list[tuple[str, str, str, str, bool]]] = {}
    ctr_id = ctr_id0
    container_cols = (
        "id", "host_id", "container_id", "subject_key", "name", "image", "state", "running", "network_mode", "networks", "cap_add",
        "privileged", "compose_project", "compose_service",
    )  # fmt: skip
    with _table("posture_containerrecord", container_cols) as ct:
        for (host_id, _name, _labels), n_ctr in zip(host_rows, per_host_containers, strict=True):
            projects = rng.sample(PROJECTS, k=min(len(PROJECTS), max(1, n_ctr // 4)))
            boxes = boxes_of[host_id] = []
            for c in range(max(1, n_ctr)):
                project = projects[c % len(projects)] if rng.random() < 0.8 else ""
                service = SERVICES[c % len(SERVICES)]
                replica = c // len(SERVICES) + 1
                name = f"{project}-{service}-{replica}" if project else f"{service}-{c}"
                key = (f"{project}/{service}" + (f"/{replica}" if replica > 1 else "")) if project else name
                image = rng.choice(IMAGES)
                running = rng.random() < 0.9
                boxes.append((name, key, image, project, running))
                if c < n_ctr:
                    ct.row((ctr_id, host_id, f"{ctr_id:064x}", key, name, image, "running" if running else "exited", running, "bridge",
                            json.dumps(["bridge"]), json.dumps([]), False, project, service if project else ""))  # fmt: skip
                    ctr_id += 1

    finding_id = finding_id0
    risk_rows: dict[int, risk.Risk] = {}
    open_counts: dict[int, Counter[str]] = {}
    finding_meta: list[tuple[int, datetime, str, datetime | None]] = []  # (id, first_seen, status, resolved_at) for events
    finding_cols = (
        "id", "host_id", "fingerprint", "rule_id", "cis", "severity", "subject_type", "subject_key", "subject_name", "item_key", "title",
        "evidence", "remediation", "running", "exposed", "status", "first_seen", "last_seen", "resolved_at", "accepted_until", "exception_id",
        "image", "compose_project",
    )  # fmt: skip
    with _table("posture_finding", finding_cols) as ft:
        for (host_id, host_name, labels), n_find in zip(host_rows, per_host_findings, strict=True):
            boxes = boxes_of[host_id]
            counted = []
            for k in range(n_find):
                roll = rng.random()
                if roll < 0.9 or not NETWORK_RULES:
                    rule = rng.choice(CONTAINER_RULES)
                    name, key, image, project, running = rng.choice(boxes)
                    subject_type, subject_name = SubjectType.CONTAINER.value, name
                elif roll < 0.97:
                    rule, key, image, project, running = rng.choice(NETWORK_RULES), f"net-{k % 5}", "", "", None
                    subject_type, subject_name = SubjectType.NETWORK.value, key
                else:
                    rule, key, image, project, running = rng.choice(DAEMON_RULES), "daemon", "", "", None
                    subject_type, subject_name = SubjectType.DAEMON.value, host_name
                item = str(k)
                first = now - timedelta(minutes=rng.randint(5, 90 * 24 * 60))
                exception_id = exception_scopes.get((rule.id, image)) if labels["env"] == "dev" else None
                status, resolved_at, accepted_until = "open", None, None
                if exception_id:
                    status, accepted_until = "accepted", now + timedelta(days=30)
                elif rng.random() < 0.1:
                    status, resolved_at = "resolved", first + (now - first) * rng.random()
                exposed = rule.severity.rank >= 3 and rng.random() < 0.3
                ft.row((
                    finding_id, host_id, f"{rule.id}|{subject_type}|{key}|{item}", rule.id, rule.cis or "", rule.severity.value, subject_type,
                    key, subject_name, item, rule.title[:200], json.dumps({"item": item, "image": image}),
                    f"Fix {rule.id} on {subject_name}: see the rule's remediation.", running, exposed, status, first,
                    resolved_at or now, resolved_at, accepted_until, exception_id, image, project,
                ))  # fmt: skip
                if status == "open":
                    counted.append(risk.RiskItem(rule_id=rule.id, severity=rule.severity.value, running=running, exposed=exposed))
                finding_meta.append((finding_id, first, status, resolved_at))
                finding_id += 1
            risk_rows[host_id] = risk.score(counted)
            open_counts[host_id] = Counter(item.severity for item in counted)
    built.containers, built.findings = ctr_id - ctr_id0, finding_id - finding_id0

    host_cols = (
        "id", "name", "url", "insecure", "poll_interval", "labels", "enabled", "host_listeners", "tls_ca", "tls_cert", "tls_key", "ssh_key",
        "ssh_known_hosts", "created_at", "next_poll_at", "failures", "last_poll_at", "last_success_at", "last_status", "last_error",
        "risk_score", "risk_breakdown", "risk_points", "risk_exposed_critical", "risk_critical", "risk_high", "risk_sampled_at",
        *OPEN_COUNT_FIELDS, "open_total", "stale_at", "evaluated", "answers_digest",
    )  # fmt: skip
    interval = 300
    # Hosts go in after their findings were scored (no foreign keys are checked until commit).
    # Most are fine; one in 40 is unreachable and one in 25 stale (no good poll for over
    # three intervals), so that the status filters have something to find.
    with _table("posture_dockerhost", host_cols) as t:
        for index, (host_id, name, labels) in enumerate(host_rows):
            r, counts = risk_rows[host_id], open_counts[host_id]
            status, error, failures, success = "ok", "", 0, now - timedelta(seconds=rng.randint(0, interval))
            if index % 40 == 1:
                status, error, failures, success = "unreachable", "cannot reach the engine: connection refused", 4, now - timedelta(days=1)
            elif index % 25 == 3:
                success = now - timedelta(seconds=interval * (DockerHost.STALE_AFTER_INTERVALS + rng.randint(1, 20)))
            t.row((host_id, name, f"tcp://{name}.example.test:2376", False, interval, json.dumps(labels), True, False, "", "", "", "", "",
                   now - timedelta(days=120), success + timedelta(seconds=interval), failures, max(success, now - timedelta(seconds=interval)),
                   success, status, error, r.score, json.dumps(r.as_json()), r.points, r.exposed_critical, r.critical, r.high, success,
                   *(counts[sev.value] for sev in Severity), sum(counts.values()),
                   success + timedelta(seconds=DockerHost.STALE_AFTER_INTERVALS * interval), "", ""))  # fmt: skip
    built.hosts = len(host_rows)

    with _table("posture_risksample", ("host_id", "at", "score", "points", "open_count", "counts", "breakdown")) as t:
        for host_id, _name, _labels in host_rows:
            r = risk_rows[host_id]
            for s in range(samples_per_host):
                points = max(0.0, r.points * (0.6 + 0.4 * s / max(1, samples_per_host - 1)) + rng.uniform(-5, 5))
                t.row((host_id, now - timedelta(hours=6 * (samples_per_host - s)), risk.scale(points), round(points, 2), 0, "{}", "[]"))
                built.samples += 1

    with _table("posture_findingevent", ("finding_id", "at", "kind", "detail")) as t:
        extra = max(0, events - len(finding_meta))
        for fid, first, status, resolved_at in finding_meta:
            t.row((fid, first, "opened", "{}"))
            if status == "resolved":
                t.row((fid, resolved_at, "resolved", "{}"))
        built.events = len(finding_meta) + sum(1 for m in finding_meta if m[2] == "resolved")
        for _ in range(max(0, extra - (built.events - len(finding_meta)))):
            fid, first, _status, _resolved = finding_meta[rng.randrange(len(finding_meta))]
            t.row((fid, first + (now - first) * rng.random(), "changed", json.dumps({"evidence": {"from": {}, "to": {}}})))
            built.events += 1

    _reset_sequences([DockerHost, ContainerRecord, Finding, FindingEvent, RiskSample, RiskException])
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--containers", type=int)
    parser.add_argument("--findings", type=int)
    parser.add_argument("--events", type=int)
    args = parser.parse_args()
    scale = args.hosts / 10_000
    built = build_fleet(
        hosts=args.hosts,
        containers=args.containers or int(100_000 * scale),
        findings=args.findings or int(330_000 * scale),
        events=args.events or int(1_000_000 * scale),
    )
    print(built)


if __name__ == "__main__":
    main()
