"""What polls leave in the database, what retention keeps of it, and how long 30 days
of 10,000 hosts polled every 5 minutes take. A section of ``make bench``
(``tests/bench.py``); nothing here asserts a size.

1,000 real polls (``polling.poll``: the collector over the simulator's sockets, the
rules, ``apply_snapshot``) of 20 simulated hosts of 50 containers, with churn between
rounds (``CHURN`` changes per host per poll, on average). Rows written per table are
counted; bytes per row (indexes and TOAST included) are read after ``VACUUM FULL``. The
30-day estimate multiplies the rows each policy keeps (``POSTURE_RETENTION_*``) by those
sizes (risk samples: the change samples measured here plus one an hour per host, which
polls minutes apart never reach), and adds an allowance for PostgreSQL's dead rows between vacuums. Then one
retention run over 200,000 old rows gives its speed.
"""

from __future__ import annotations

import copy
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from posture import polling, retention
from posture.models import ContainerRecord, DockerHost, Finding, FindingEvent, NetworkRecord, PollRun, PollStatus, PublishedPort, RiskSample, Snapshot
from posture.simulate import simulated_fleet

HOSTS = 20
ROUNDS = 50  # polls per host
CHURN = 0.05  # changes per host per poll: a host changes about once every 20 polls
FLEET, POLLS_PER_DAY, DAYS = 10_000, 288, 30
SIZE_SAMPLE_ROWS = 2000  # rows a table needs for its bytes per row to mean something
DEAD_ROW_ALLOWANCE = 1.3  # autovacuum keeps a table's dead rows to about a fifth of it
TABLES = {
    "poll runs": PollRun,
    "risk samples": RiskSample,
    "snapshots": Snapshot,
    "finding events": FindingEvent,
    "findings": Finding,
    "containers": ContainerRecord,
    "published ports": PublishedPort,
    "networks": NetworkRecord,
    "hosts": DockerHost,
}


@dataclass
class Table:
    rows_before: int
    rows_after: int = 0
    bytes_grown: int = 0  # relation size growth over the polls, before compaction
    bytes_per_row: float = 0.0

    @property
    def written(self) -> int:
        return self.rows_after - self.rows_before


def _size(model: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [model._meta.db_table])
        return cursor.fetchone()[0]


def poll_the_fleet() -> tuple[dict[str, Table], float]:
    with simulated_fleet(hosts=HOSTS, containers=50, seed=11) as fleet:
        hosts = [DockerHost.objects.create(name=sim.name, url=url, labels={"simulated": "true"}) for sim, url in zip(fleet.hosts, fleet.urls, strict=True)]
        for host in hosts:  # the first poll of each: the inventory and findings it starts from
            polling.poll(host, uuid.uuid4().hex)
        tables = {name: Table(rows_before=model.objects.count()) for name, model in TABLES.items()}
        sizes = {name: _size(model) for name, model in TABLES.items()}
        draw = random.Random(11)
        started = time.perf_counter()
        for _ in range(ROUNDS):
            for index, host in enumerate(hosts):
                if draw.random() < CHURN:
                    fleet.churn(index, 1)
                host.refresh_from_db()
                polling.poll(host, uuid.uuid4().hex)
        seconds = time.perf_counter() - started
    for name, model in TABLES.items():
        tables[name].rows_after = model.objects.count()
        tables[name].bytes_grown = _size(model) - sizes[name]
    # Risk samples are written only at a change here (a dozen per 1,000 polls): a table of a
    # few dozen rows is mostly empty pages, which would make each row look 4 KiB. Measure
    # the size on copies of the real rows instead (removed afterwards).
    copies = _copies(RiskSample, SIZE_SAMPLE_ROWS)
    with connection.cursor() as cursor:
        for model in TABLES.values():
            cursor.execute(f"VACUUM FULL ANALYZE {model._meta.db_table}")
    for name, model in TABLES.items():
        tables[name].bytes_per_row = _size(model) / max(1, model.objects.count())
    RiskSample.objects.filter(pk__in=copies).delete()
    return tables, seconds


def _copies(model: Any, rows: int) -> list[int]:
    """Copies of ``model``'s rows (ids cleared) until the table holds ``rows``; their ids."""
    originals = list(model.objects.all())
    missing = rows - len(originals)
    if missing <= 0 or not originals:
        return []
    clones = []
    for i in range(missing):
        clone = copy.copy(originals[i % len(originals)])
        clone.pk = None
        clones.append(clone)
    return [obj.pk for obj in model.objects.bulk_create(clones, batch_size=1000)]


def thirty_days(tables: dict[str, Table]) -> list[tuple[str, float, str]]:
    """(table, rows kept after 30 days of the fleet, which policy), per table."""
    polls = HOSTS * ROUNDS
    per_poll = {name: t.written / polls for name, t in tables.items()}
    per_host = {name: t.rows_after / HOSTS for name, t in tables.items()}
    day = FLEET * POLLS_PER_DAY
    hourly_after, poll_days = settings.RETENTION_HOURLY_AFTER_DAYS or DAYS, settings.RETENTION_POLL_DAYS or DAYS
    snapshots_stored = per_poll["snapshots"] * POLLS_PER_DAY * DAYS
    kept_snapshots = min(snapshots_stored, settings.RETENTION_SNAPSHOTS + min(DAYS, settings.RETENTION_SNAPSHOT_DAYS or DAYS))
    return [
        ("poll runs", day * min(DAYS, poll_days) * per_poll["poll runs"], f"{min(DAYS, poll_days)} days"),
        (
            # A sample when a host's score changes (what the polls above wrote: they ran
            # minutes apart, so none was an hourly one) and one an hour whatever happens;
            # after hourly_after days the change samples are thinned into the hourly ones.
            "risk samples",
            FLEET * 24 * DAYS + day * min(DAYS, hourly_after) * per_poll["risk samples"],
            f"one an hour and one at each change; changes kept for {hourly_after} days",
        ),
        ("snapshots", FLEET * max(1.0, kept_snapshots), f"the last {settings.RETENTION_SNAPSHOTS} and one a day"),
        ("finding events", day * DAYS * per_poll["finding events"], f"all ({settings.RETENTION_EVENT_DAYS} days)"),
        ("findings", FLEET * per_host["findings"] + day * DAYS * max(0.0, per_poll["findings"]), "current, and resolved ones for a year"),
        ("containers", FLEET * per_host["containers"], "current state"),
        ("published ports", FLEET * per_host["published ports"], "current state"),
        ("networks", FLEET * per_host["networks"], "current state"),
        ("hosts", FLEET, ""),
    ]


def prune_speed(rows: int = 100_000) -> dict[str, Any]:
    """Time one retention run over ``rows`` poll runs past their 14 days and ``rows`` risk
    samples a poll apart, 13 to 30 days old (eleven in twelve go)."""
    hosts = list(DockerHost.objects.all())
    old = timezone.now() - timedelta(days=20)
    PollRun.objects.bulk_create(
        (PollRun(host=hosts[i % len(hosts)], started_at=old + timedelta(seconds=i), status=PollStatus.OK) for i in range(rows)), batch_size=5000
    )
    RiskSample.objects.bulk_create(
        (RiskSample(host=hosts[i % len(hosts)], at=old - timedelta(days=10) + timedelta(seconds=300 * (i // len(hosts))), score=i % 100) for i in range(rows)),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    started = time.perf_counter()
    pruned = retention.prune()
    seconds = time.perf_counter() - started
    deleted = pruned.poll_runs + pruned.risk_samples + pruned.snapshots + pruned.events
    return {"seconds": round(seconds, 1), "deleted": deleted, "per_s": round(deleted / seconds) if seconds else 0, "finished": pruned.finished}


def run() -> str:
    tables, seconds = poll_the_fleet()
    polls = HOSTS * ROUNDS
    grown = sum(t.bytes_grown for t in tables.values())
    written = sum(max(0, t.written) for t in tables.values())
    rows = "\n".join(
        f"| {name} | {t.written / polls * 1000:,.0f} | {t.bytes_per_row:,.0f} B | {t.bytes_grown / 1024:,.0f} KiB |"
        for name, t in tables.items()
        if name != "hosts"
    )
    estimate = thirty_days(tables)
    total = sum(count * tables[name].bytes_per_row for name, count, _policy in estimate) * DEAD_ROW_ALLOWANCE
    lines = "\n".join(f"| {name} | {count:,.0f} | {policy} | {count * tables[name].bytes_per_row / 2**30:,.1f} GiB |" for name, count, policy in estimate)
    prune = prune_speed()
    samples_per_poll = tables["risk samples"].written / polls
    day_rows = FLEET * POLLS_PER_DAY * (1 + samples_per_poll)  # poll runs, and change samples thinned away
    return f"""## Database size per 1,000 polls, and 30 days of 10,000 hosts

{polls:,} polls (`polling.poll`: collector, rules, `apply_snapshot`) of {HOSTS} simulated hosts of 50
containers, {CHURN:g} changes per host per poll on average, in {seconds:.0f} s. {written:,} rows written
in all; the tables grew by {grown / 2**20:,.1f} MiB (before compaction: rewritten rows leave dead
ones until vacuum).

| table | rows per 1,000 polls | bytes per row (with indexes) | growth over the {polls:,} polls |
|---|---|---|---|
{rows}

**30 days of 10,000 hosts polled every 5 minutes** ({FLEET * POLLS_PER_DAY * DAYS:,} polls), under the
default retention (`POSTURE_RETENTION_*`), with the rows per poll measured above:

| table | rows kept | policy | size |
|---|---|---|---|
{lines}
| **all**, with {DEAD_ROW_ALLOWANCE:g}× for dead rows between vacuums | | | **{total / 2**30:,.0f} GiB** |

Retention's speed: one run over 100,000 poll runs past their 14 days and 100,000 risk samples
a poll apart, 13 to 30 days old (eleven in twelve go), deleted {prune["deleted"]:,} rows in {prune["seconds"]} s
({prune["per_s"]:,} rows/s, batches of {settings.RETENTION_BATCH}, each its own transaction{"" if prune["finished"] else "; the run stopped at its time budget"}).
What a day of the 10,000-host fleet leaves to prune ({FLEET * POLLS_PER_DAY:,} poll runs, and about
{FLEET * POLLS_PER_DAY * samples_per_poll:,.0f} risk samples taken at a change, thinned into the hourly ones) takes about {day_rows / max(1, prune["per_s"]) / 60:,.0f} minutes at that rate, spread over the day's runs
(every {settings.RETENTION_EVERY / 60:g} minutes, each stopping after {retention.RUN_SECONDS:g} s, the next resuming).
"""
