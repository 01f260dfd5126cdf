"""A host's topology: who reaches what, drawn as SVG for the host page and the PDF report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.utils.safestring import SafeString

from posture.collector.snapshot import HostSnapshot

from .graph import FindingRef, build
from .svg import LayoutError, render


@dataclass(frozen=True)
class Drawing:
    svg: SafeString | None
    error: str = ""
    containers: int = 0
    folded: int = 0
    listeners: int = 0


def draw(snapshot: HostSnapshot, findings: Iterable[FindingRef], host_name: str) -> Drawing:
    """The host's topology with its open findings; a layout failure is reported, not raised."""
    graph = build(snapshot, findings, host_name)
    listeners = sum(1 for n in graph.nodes.values() if n.kind == "listener")
    try:
        svg = render(graph)
    except LayoutError as exc:
        return Drawing(svg=None, error=str(exc), containers=len(snapshot.containers), folded=graph.folded, listeners=listeners)
    return Drawing(svg=svg, containers=len(snapshot.containers), folded=graph.folded, listeners=listeners)
