"""``make demo``'s fleet: simulated hosts registered with a week of history already behind them.

The history is made offline, without sockets: a copy of each simulated host (the same
seed gives the same host, ``Simulator.plan``) is churned step by step, and each step's
answers become a snapshot applied at a backdated time through ``DockerHost.apply_snapshot``
(the path every poll takes), so findings open, change, resolve and reopen, and risk
samples trace a week. The last step is the host as the simulator starts it, so the first
live poll finds the fleet where its history left it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from posture.collector.parse import build_snapshot
from posture.collector.snapshot import Connection
from posture.models import DockerHost, PollRun
from posture.rules import evaluate_all
from posture.simulate import Simulator
from posture.simulate.host import SimHost

SIMULATED_LABEL = {"simulated": "true"}
HISTORY_TOKEN = "demo-history"
# A demo fleet is small: poll it often enough to see polls land.
INTERVAL = 60


@dataclass
class DemoFleet:
    hosts: int
    applied: int  # snapshots applied to build the history


def build(
    directory: Path,
    *,
    hosts: int,
    days: float = 7,
    step_hours: float = 6,
    churn: float = 0.6,
    seed: int = 0,
    now: datetime | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> DemoFleet:
    """Register ``hosts`` simulated hosts (served later from ``directory``) with ``days`` of
    history, a step every ``step_hours`` with ``churn`` changes per host per step."""
    now = now or timezone.now()
    simulator = Simulator(directory, hosts=hosts, seed=seed)
    steps = int(days * 24 / step_hours)
    applied = 0
    for index, (sim, start) in enumerate(zip(simulator.plan(), simulator.plan(), strict=True)):
        # One transaction per host: SQLite syncs the file once, not once a step.
        with transaction.atomic():
            host = DockerHost(name=sim.name, url=f"unix://{sim.socket}", labels={**SIMULATED_LABEL, "env": _env(index)}, poll_interval=INTERVAL)
            host.register(actor=None)
            # The history copy draws its own changes; the live simulator keeps the seed's.
            sim.churn_rng = random.Random(f"posture-demo:{seed}:{sim.index}")
            rate = random.Random(f"posture-demo-rate:{seed}:{sim.index}")
            for k in range(steps):
                changes = int(churn) + (rate.random() < churn - int(churn))
                if changes:
                    sim.churn(changes)
                if changes or k % 2 == 0:  # a trend point at least every other step
                    _apply(host, sim, now - timedelta(hours=(steps - k) * step_hours))
                    applied += 1
            _apply(host, start, now - timedelta(minutes=1))  # the live simulator's starting state
            applied += 1
            PollRun.objects.filter(host=host, token=HISTORY_TOKEN).update(finished_at=F("started_at") + timedelta(milliseconds=150))
            # The first live polls spread over the interval, after the simulator is up.
            DockerHost.objects.filter(pk=host.pk).update(next_poll_at=now + timedelta(seconds=10 + index * INTERVAL / hosts))
        progress(index + 1)
    return DemoFleet(hosts=hosts, applied=applied)


def _apply(host: DockerHost, sim: SimHost, at: datetime) -> None:
    snap = build_snapshot(collected_at=at.isoformat(), connection=Connection(scheme="unix", address=host.url), **sim.raw_answers())
    run = PollRun.objects.create(host=host, token=HISTORY_TOKEN, started_at=at)
    host.apply_snapshot(snap, evaluate_all(snap, host_name=host.name), run)


def _env(index: int) -> str:
    return ("prod", "prod", "stage", "dev")[index % 4]
