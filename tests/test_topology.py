"""The topology: a graph of who reaches what, as SVG safe to inline under the strict CSP,
readable at 200 containers, on its own page and in the PDF for the riskiest hosts."""

from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.utils import timezone
from pypdf import PdfReader

from posture.collector.snapshot import Listener
from posture.middleware import CSP
from posture.models import DockerHost, PollRun
from posture.reports import context
from posture.reports.pdf import render_pdf
from posture.rules import evaluate, evaluate_all
from posture.topology import draw
from posture.topology.graph import build
from posture.topology.svg import ALLOWED

from .builders import bind, container, default_bridge, default_networks, host_state, port, snapshot, user_network

SVG = "{http://www.w3.org/2000/svg}"


class Ref:
    """A FindingSpec seen the way the page sees a stored finding."""

    def __init__(self, spec) -> None:
        self.rule_id, self.severity, self.subject_key, self.item_key = spec.rule_id, spec.severity.value, spec.subject_key, spec.key


def refs(snap):
    return [Ref(s) for s in evaluate(snap, host_name="h")]


def fleet_of_200():
    """200 containers on four networks and the host network: a few exposed, most quiet."""
    bridges = [default_bridge()] + [user_network(f"net{i}", subnet=f"172.{30 + i}.0.0/16") for i in range(3)]
    containers = []
    for i in range(180):
        ports = [port(8000 + i % 7, 20000 + i)] if i % 12 == 0 else []
        containers.append(container(f"svc-{i:03d}", networks=[bridges[i % 4].name], ports=ports, image=f"registry.example/team/app-{i % 9}:1.{i}"))
    containers += [container(f"edge-{i}", network_mode="host", cap_add=("NET_ADMIN",) if i == 0 else ()) for i in range(10)]
    containers += [container(f"side-{i}", network_mode=f"container:svc-{i:03d}") for i in range(10)]
    listeners = (Listener("127.0.0.1", 5432, "tcp", "postgres"), Listener("0.0.0.0", 6379, "tcp", "redis-server"), Listener("0.0.0.0", 22, "tcp", "sshd"))
    return snapshot(containers, networks=[*default_networks(), *bridges[1:]], host=host_state(*listeners))


def check_safe(svg: str) -> ET.Element:
    """Only allowlisted SVG: shapes, text, geometry. No script, style, link or handler."""
    root = ET.fromstring(svg)
    for element in root.iter():
        tag = element.tag.removeprefix(SVG)
        assert tag in ALLOWED, tag
        for name in element.attrib:
            assert name in ALLOWED[tag] or name in ("xmlns", "role", "class"), (tag, name)
            assert not name.startswith("on") and name not in ("style", "href")
    return root


def test_two_hundred_containers_stay_readable():
    snap = fleet_of_200()
    assert len(snap.containers) == 200
    graph = build(snap, refs(snap), "h")
    drawn = [n for n in graph.nodes.values() if n.kind == "container"]
    assert graph.folded > 100  # the quiet ones fold into one box per network
    assert len(drawn) + graph.folded == 200 and len(drawn) < 60
    drawing = draw(snap, refs(snap), "h")
    svg = str(drawing.svg)
    root = check_safe(svg)
    assert len(svg) < 600_000
    width, height = (float(v) for v in root.attrib["viewBox"].split()[2:])
    assert width < 4000 and height < 6000  # rows, not one column of 200 boxes
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "svc-000" in texts and "edge-0" in texts and "host network namespace" in texts
    assert "PostgreSQL on 127.0.0.1:5432, process postgres" in texts
    assert "more containers" in texts
    # Edges carry the colour of their worst finding: the NET_ADMIN host-network container is critical.
    assert any(p.attrib.get("stroke") == "#7f1d1d" for p in root.iter(f"{SVG}path"))


def test_engine_text_cannot_escape_into_the_svg():
    hostile = 'x" URL="javascript:alert(1)" label="<script>'
    snap = snapshot(
        [
            container(
                "web",
                image="<script>alert(1)</script>\\N\\G\u202e",
                labels={"com.docker.compose.project": hostile, "com.docker.compose.service": "</text><foreignObject>"},
                ports=[port(80, 8080)],
            )
        ],
        host=host_state(Listener("0.0.0.0", 9000, "tcp", "</g><script>x")),
    )
    svg = str(draw(snap, refs(snap), "h").svg)
    check_safe(svg)
    assert "<script" not in svg and "URL=" not in svg.replace("URL='", "")  # the quote cannot close the DOT string
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "\u202e" not in svg and "/N/G" in svg  # backslash escapes are inert
    assert "href" not in svg and "foreignObject" not in svg.replace("&lt;foreignObject&gt;", "")


def test_a_loopback_publication_is_drawn_without_an_edge_from_outside():
    # The engine binds an unaddressed -p on the network's default address, and says so.
    db = container("db", networks=["lo"], ports=[port(5432, 5432)], bound_ports=(port(5432, 5432, ip="127.0.0.1"),))
    snap = snapshot([db], networks=[*default_networks(), user_network("lo", binding="127.0.0.1")])
    graph = build(snap, refs(snap), "h")
    outside = graph.nodes["outside"].id
    loopback = graph.nodes["addr:lo"].id
    assert all(e.tail != outside for e in graph.edges)
    assert any(e.tail == loopback for e in graph.edges)


def test_joined_namespaces_are_drawn_as_dashed_edges():
    sock = bind("/var/run/docker.sock", "/var/run/docker.sock")
    snap = snapshot([container("app", mounts=(sock,)), container("sidecar", network_mode="container:app")])
    graph = build(snap, refs(snap), "h")
    [edge] = [e for e in graph.edges if e.dashed]
    assert edge.label == "shares network namespace" and edge.severity == "low"
    assert graph.nodes[f"c:{snap.container('app').id}"].severity == "critical"


# --- the page and the report ------------------------------------------------------------


def stored_host(name: str, snap, risk: bool = True) -> DockerHost:
    host = DockerHost.objects.create(name=name, url="unix:///var/run/docker.sock", host_listeners=True)
    run = PollRun.begin(host, uuid.uuid4().hex)
    host.apply_snapshot(snap, evaluate_all(snap, host_name=name), run)
    return host


@pytest.mark.django_db
def test_the_topology_page_inlines_the_svg_with_constant_queries(client, viewer, django_assert_max_num_queries):
    small = stored_host("small", snapshot([container("edge", network_mode="host")], host=host_state(Listener("127.0.0.1", 5432, "tcp", "postgres"))))
    big = stored_host("big", fleet_of_200())
    client.force_login(viewer)
    with django_assert_max_num_queries(10) as few:
        response = client.get(f"/hosts/{small.name}/topology/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<svg height="' in page and "Topology of small" in page
    assert response["Content-Security-Policy"] == CSP and "unsafe-inline" not in CSP
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(f"/hosts/{big.name}/topology/")
    assert "containers with nothing of their own to show folded" in response.content.decode()
    assert f'href="/hosts/{small.name}/topology/"' in client.get(f"/hosts/{small.name}/").content.decode()


@pytest.mark.django_db
def test_the_topology_page_before_any_poll_and_for_outsiders(client, viewer, outsider):
    DockerHost.objects.create(name="fresh", url="unix:///var/run/docker.sock")
    client.force_login(viewer)
    page = client.get("/hosts/fresh/topology/").content.decode()
    assert "Not polled yet" in page and "Host listeners are off" in page
    client.force_login(outsider)
    assert client.get("/hosts/fresh/topology/").status_code == 403


@pytest.mark.django_db
def test_the_report_draws_the_riskiest_hosts_topology():
    stored_host("risky", snapshot([container("router", network_mode="host", cap_add=("NET_ADMIN",)), container("db", ports=[port(5432, 5432)])]))
    for i in range(context.TOPOLOGY_HOSTS):
        stored_host(f"calm-{i}", snapshot([container("quiet", networks=["app"])], networks=[*default_networks(), user_network("app")]))
    end = timezone.now()
    built = context.build(labels={}, start=end - timedelta(days=1), end=end, title="t")
    sections = {s.host.name: s for s in built["sections"]}
    assert sections["risky"].topology.svg is not None
    assert sum(1 for s in sections.values() if s.topology) == context.TOPOLOGY_HOSTS  # the riskiest only
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(built).data)).pages).split())
    assert "Topology" in text and "host network namespace" in text
    assert "reachability" in text and "firewall" in text  # the appendix names the new families
