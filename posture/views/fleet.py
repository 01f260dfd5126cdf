"""The fleet overview: every host, its risk and trend, filtered in place with htmx."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from posture import charts, risk
from posture.labels import parse_label
from posture.models import DockerHost, HostStatus, RiskSample, Severity
from posture.models.querysets import RISK_ORDER

from .rendering import HtmxHttpRequest, paginate, render_page

# Sort key → (label, ordering); the first is the default.
SORTS = {
    "risk": ("risk", RISK_ORDER),
    "name": ("name", ("name",)),
    "findings": ("open findings", ("-open_total", "name")),
    "polled": ("last poll", ("-last_poll_at", "name")),
}
TREND_POINTS = 30
BAND_NAMES = [name for name, _low, _high in risk.BANDS]


def _filtered(request: HtmxHttpRequest) -> tuple[object, dict[str, str], str]:
    """The hosts the filters select, the filters as given, and a problem with them if any."""
    params = {k: request.GET.get(k, "").strip() for k in ("q", "label", "status", "severity", "sort", "band")}
    # Every column shown is on the host row (open counts included): no join, no count of findings.
    hosts = DockerHost.objects.all()
    problem = ""
    if params["q"]:
        hosts = hosts.filter(Q(name__icontains=params["q"]) | Q(url__icontains=params["q"]))
    if params["label"]:
        try:
            hosts = hosts.with_labels(dict([parse_label(params["label"])]))
        except ValidationError as exc:
            problem = exc.messages[0]
    if params["status"] in HostStatus.values:
        hosts = hosts.with_display_status(HostStatus(params["status"]))
    if params["band"] in BAND_NAMES:
        hosts = hosts.in_band(params["band"])
    if params["severity"] in Severity.values():
        hosts = hosts.filter(**{f"open_{params['severity']}__gt": 0})
    _label, ordering = SORTS.get(params["sort"], SORTS["risk"])
    return hosts.order_by(*ordering), params, problem


def _bands(request: HtmxHttpRequest) -> list[dict[str, object]]:
    """How many hosts fall in each risk band (one query), each a link to the fleet filtered to it."""
    counts = DockerHost.objects.risk_bands()
    query = request.GET.copy()
    query.pop("page", None)
    rows = []
    for name, low, high in risk.BANDS:
        query["band"] = name
        rows.append({"name": name, "low": low, "high": high, "count": counts[name], "query": query.urlencode()})
    return rows


def _without_page(request: HtmxHttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def fleet(request: HtmxHttpRequest) -> HttpResponse:
    hosts, params, problem = _filtered(request)
    page = paginate(request, hosts, per_page=25)
    # One query for every sparkline on the page, not one per host.
    trends: dict[int, list[int]] = defaultdict(list)
    for host_id, score in RiskSample.objects.latest_per_host([h.pk for h in page], TREND_POINTS).values_list("host_id", "score"):
        trends[host_id].append(score)
    rows = [(h, charts.sparkline(trends[h.pk], label=f"risk trend of {h.name}")) for h in page]
    bands = _bands(request)
    sums = DockerHost.objects.open_totals()
    totals = {s.value: sums[s.value] for s in Severity}
    context = {
        "page": page,
        "rows": rows,
        "params": params,
        "problem": problem,
        "totals": totals,
        "host_count": sums["hosts"],
        "severity_bar": charts.severity_bar(totals),
        "bands": bands,
        "band_chart": charts.risk_bands({b["name"]: b["count"] for b in bands}),
        "severities": list(Severity),
        "statuses": list(HostStatus),
        "sorts": {key: label for key, (label, _ordering) in SORTS.items()},
        "query": _without_page(request),
    }
    return render_page(request, "posture/fleet.html", context, partial="hosts" if request.htmx else None)
