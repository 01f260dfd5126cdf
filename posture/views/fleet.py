"""The fleet overview: every host, its risk and trend, filtered in place with htmx."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth.decorators import permission_required
from django.db.models import Q, Sum
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from posture import charts
from posture.models import DockerHost, RiskSample

from .rendering import HtmxHttpRequest, paginate, render_page

SORTS = {"risk": ("-risk_score", "name"), "name": ("name",), "findings": ("-open_total", "name"), "polled": ("-last_poll_at", "name")}
SEVERITIES = ("critical", "high", "medium", "low", "info")
TREND_POINTS = 30
STATUSES = ("ok", "stale", "unreachable", "error", "new")


def _filtered(request: HtmxHttpRequest) -> tuple[object, dict[str, str]]:
    params = {k: request.GET.get(k, "").strip() for k in ("q", "label", "status", "severity", "sort")}
    hosts = DockerHost.objects.with_open_counts()
    if params["q"]:
        hosts = hosts.filter(Q(name__icontains=params["q"]) | Q(url__icontains=params["q"]))
    if "=" in params["label"]:
        key, value = params["label"].split("=", 1)
        hosts = hosts.with_labels({key.strip(): value.strip()})
    if params["status"] in STATUSES:
        hosts = hosts.with_display_status(params["status"])
    if params["severity"] in SEVERITIES:
        hosts = hosts.filter(**{f"open_{params['severity']}__gt": 0})
    return hosts.order_by(*SORTS.get(params["sort"], SORTS["risk"])), params


def _without_page(request: HtmxHttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def fleet(request: HtmxHttpRequest) -> HttpResponse:
    hosts, params = _filtered(request)
    page = paginate(request, hosts, per_page=25)
    # One query for every sparkline on the page, not one per host.
    trends: dict[int, list[int]] = defaultdict(list)
    for host_id, score in RiskSample.objects.latest_per_host([h.pk for h in page], TREND_POINTS).values_list("host_id", "score"):
        trends[host_id].append(score)
    rows = [(h, charts.sparkline(trends[h.pk], label=f"risk trend of {h.name}")) for h in page]
    totals = DockerHost.objects.with_open_counts().aggregate(**{s: Sum(f"open_{s}") for s in SEVERITIES})
    totals = {s: totals[s] or 0 for s in SEVERITIES}
    context = {
        "page": page,
        "rows": rows,
        "params": params,
        "totals": totals,
        "host_count": DockerHost.objects.count(),
        "severity_bar": charts.severity_bar(totals),
        "severities": SEVERITIES,
        "query": _without_page(request),
    }
    return render_page(request, "posture/fleet.html", context, partial="hosts" if request.htmx else None)
