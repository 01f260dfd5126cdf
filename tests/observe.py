"""Run the real collector and the rule catalog against a test engine."""

from __future__ import annotations

from posture.collector import parse_engine_url
from posture.collector.engine import collect
from posture.collector.snapshot import HostSnapshot
from posture.collector.target import EngineTarget
from posture.rules import FindingSpec, evaluate

from .builders import hits, subjects

__all__ = ["conclusions", "hits", "snapshot_of", "subjects"]


def snapshot_of(url: str, *, insecure: bool = False, previous: HostSnapshot | None = None) -> HostSnapshot:
    return collect(EngineTarget(url=parse_engine_url(url), insecure=insecure, timeout=15), previous)


def conclusions(url: str, *, insecure: bool = False) -> list[FindingSpec]:
    return evaluate(snapshot_of(url, insecure=insecure), host_name="test-host")
