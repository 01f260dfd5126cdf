"""A topology graph as SVG, laid out by Graphviz (``dot``), safe to inline in pages and PDFs.

Engine text is hostile. It reaches Graphviz only through ``_text`` (control and bidi
characters removed, quotes and backslashes replaced, length capped, never an HTML-like
label), node ids are Posture's own, and Graphviz's output is rebuilt element by element
from an allowlist: no script, no style attribute, no link, no foreign object, no event
handler, nothing the strict Content-Security-Policy would have to block.
"""

from __future__ import annotations

import html
import re
import subprocess
import unicodedata
import xml.etree.ElementTree as ET

import graphviz
from django.utils.safestring import SafeString, mark_safe

from posture.rules import Severity

from .graph import Graph

LAYOUT_TIMEOUT = 60  # seconds; dot is fast, but a bound keeps a web worker from hanging
MAX_LABEL = 60
NEUTRAL = "#94a3b8"
FILL = {"outside": "#fee2e2", "address": "#e2e8f0", "listener": "#f1f5f9", "port": "#fef3c7", "container": "#ffffff", "gateway": "#e0f2fe", "folded": "#f8fafc"}
SHAPE = {"outside": "doubleoctagon", "address": "box", "listener": "note", "port": "cds", "container": "box", "gateway": "ellipse", "folded": "folder"}
SVG_NS = "{http://www.w3.org/2000/svg}"
# Elements and attributes kept from Graphviz's SVG; everything else is dropped.
ALLOWED: dict[str, frozenset[str]] = {
    "svg": frozenset({"width", "height", "viewBox"}),
    "g": frozenset({"id", "class", "transform"}),
    "title": frozenset(),
    "polygon": frozenset({"fill", "stroke", "points", "stroke-width", "stroke-dasharray"}),
    "polyline": frozenset({"fill", "stroke", "points", "stroke-width", "stroke-dasharray"}),
    "path": frozenset({"fill", "stroke", "d", "stroke-width", "stroke-dasharray"}),
    "ellipse": frozenset({"fill", "stroke", "cx", "cy", "rx", "ry", "stroke-width"}),
    "text": frozenset({"x", "y", "text-anchor", "font-family", "font-size", "font-weight", "fill"}),
}
UNWRAPPED = frozenset({"a"})  # Graphviz wraps tooltips in links: keep the drawing, drop the link
_VALUE = re.compile(r"^[\w\s.,:;#%()+\-]*$")


def _text(value: str) -> str:
    """Engine text made inert for DOT: printable, no quotes or backslashes, capped."""
    cleaned = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C")
    cleaned = cleaned.replace("\\", "/").replace('"', "'")
    return cleaned[:MAX_LABEL] + ("…" if len(cleaned) > MAX_LABEL else "")


def _label(lines: list[str]) -> str:
    # Each line escaped on its own, joined with DOT's own line break.
    return graphviz.nohtml("\\n".join(_text(line) for line in lines if line))


def colour(severity: str) -> str:
    return Severity(severity).colour if severity in Severity.values() else NEUTRAL


def _heavy(severity: str) -> bool:
    """Critical and high edges and nodes are drawn thicker."""
    return severity in Severity.values() and Severity(severity).rank >= Severity.HIGH.rank


def to_dot(g: Graph) -> graphviz.Digraph:
    dot = graphviz.Digraph("topology", engine="dot")
    dot.attr(rankdir="LR", fontname="DejaVu Sans", fontsize="10", nodesep="0.15", ranksep="0.6", newrank="true", bgcolor="white")
    dot.attr("node", fontname="DejaVu Sans", fontsize="9", style="filled,rounded", shape="box", penwidth="1.2")
    dot.attr("edge", fontname="DejaVu Sans", fontsize="8", arrowsize="0.6")
    members: dict[str, list] = {cluster: [] for cluster in g.clusters}
    loose: list = []
    for node in g.nodes.values():
        members.get(node.cluster, loose).append(node)

    def add(target: graphviz.Digraph, node) -> None:
        border = colour(node.severity) if node.severity else "#64748b"
        width = "2.5" if _heavy(node.severity) else "1.2"
        target.node(node.id, _label(node.lines), shape=SHAPE[node.kind], fillcolor=FILL[node.kind], color=border, penwidth=width)

    for node in loose:
        add(dot, node)
    for index, (cluster, label) in enumerate(g.clusters.items()):
        with dot.subgraph(name=f"cluster_{index}") as sub:
            sub.attr(label=_label([label]), style="rounded", color="#cbd5e1", fontcolor="#334155")
            for node in members[cluster]:
                add(sub, node)
    # Columns, left to right: the outside, addresses and ports, containers (with their
    # networks' gateways), host services. newrank lets these constraints cross clusters.
    for rank, kinds in (("min", {"outside"}), ("same", {"container", "gateway", "folded"}), ("max", {"listener"})):
        ids = [n.id for n in g.nodes.values() if n.kind in kinds]
        if ids:
            with dot.subgraph() as column:
                column.attr(rank=rank)
                for node_id in ids:
                    column.node(node_id)
    for e in g.edges:
        attrs = {"color": colour(e.severity), "penwidth": "2.2" if _heavy(e.severity) else "1"}
        if e.label:
            attrs["label"] = _label([e.label])
            attrs["fontcolor"] = colour(e.severity) if e.severity else "#475569"
        if e.dashed:
            attrs["style"] = "dashed"
        dot.edge(e.tail, e.head, **attrs)
    return dot


def _clean(element: ET.Element, out: list[str]) -> None:
    tag = element.tag.removeprefix(SVG_NS)
    if tag in UNWRAPPED:
        for child in element:
            _clean(child, out)
        return
    if tag not in ALLOWED:
        return
    attrs = "".join(
        f' {name}="{html.escape(value, quote=True)}"'
        for name, value in sorted(element.attrib.items())
        if name in ALLOWED[tag] and _VALUE.match(value) and "url(" not in value.lower()
    )
    if tag == "svg":
        attrs += ' xmlns="http://www.w3.org/2000/svg" role="img" class="topology-graph"'
    out.append(f"<{tag}{attrs}>")
    if element.text and tag in ("text", "title"):
        out.append(html.escape(element.text, quote=False))
    for child in element:
        _clean(child, out)
    out.append(f"</{tag}>")


def sanitise(svg: str) -> str:
    """Graphviz's SVG rebuilt from the allowlist: only shapes, text and their geometry."""
    root = ET.fromstring(svg[svg.index("<svg") :])
    out: list[str] = []
    _clean(root, out)
    return "".join(out)


class LayoutError(RuntimeError):
    pass


def render(g: Graph) -> SafeString:
    """Lay out and render ``g``; the result is safe to inline (see the module docstring)."""
    try:
        done = subprocess.run([str(graphviz.DOT_BINARY), "-Tsvg"], input=to_dot(g).source.encode(), capture_output=True, timeout=LAYOUT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise LayoutError("Graphviz is not installed (Debian package graphviz)") from None
    except subprocess.TimeoutExpired:
        raise LayoutError(f"Graphviz did not lay the graph out within {LAYOUT_TIMEOUT}s") from None
    if done.returncode != 0:
        raise LayoutError(f"Graphviz failed: {done.stderr.decode(errors='replace').strip()[:300]}")
    # Rebuilt from an allowlist with every text escaped: safe to mark so.
    return mark_safe(sanitise(done.stdout.decode()))
