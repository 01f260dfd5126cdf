"""A host's topology page: the outside, the host, its published ports and containers, as SVG."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from posture.models import Finding
from posture.rules import Severity
from posture.topology import draw

from .hosts import get_host
from .rendering import HtmxHttpRequest, render_page

SEVERITIES = [s.value for s in Severity]


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def host_topology(request: HtmxHttpRequest, name: str) -> HttpResponse:
    host = get_host(name)
    drawing = None
    if host.snapshot is not None:
        findings = Finding.objects.for_host(host).open().only("rule_id", "severity", "subject_key", "item_key")
        drawing = draw(host.snapshot.snapshot(), findings, host.name)
    state = host.snapshot.data.get("host") if host.snapshot else None
    context = {"host": host, "drawing": drawing, "host_state": state, "severities": SEVERITIES, "can_manage": request.user.has_perm("posture.manage_hosts")}
    return render_page(request, "posture/topology.html", context)
