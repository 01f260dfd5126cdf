"""The findings explorer: every finding of the fleet through one ``FindingFilter``, as
rows or grouped by rule, exported as streamed CSV, JSON or SARIF, and the way from a
selection to a pre-filled exception."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.views.decorators.http import require_GET, require_POST

from posture.exports import FORMATS
from posture.models import DockerHost, FilterError, Finding, FindingFilter, FindingStatus, Severity
from posture.models.exceptions import narrowest_scope
from posture.models.filters import STATUSES
from posture.rules import BY_ID, RULES

from .rendering import HtmxHttpRequest, render_page

PER_PAGE = 50
VIEWS = {"rows": "rows", "rules": "grouped by rule"}
MAX_GROUP_HOSTS = 200


def _selection(request: HtmxHttpRequest) -> tuple[FindingFilter, dict[str, str]]:
    """The filter the request asks for, or an empty one and what is wrong with the input."""
    try:
        return FindingFilter.parse(request.GET), {}
    except FilterError as exc:
        return FindingFilter(status=FindingStatus.OPEN), exc.errors


class CappedPaginator(Paginator):
    """Counts up to ``CAP`` rows (one more, to know there are more): on a fleet, counting
    every match on every page costs more than the page. The grouped view and the exports
    give exact numbers."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.CAP


def _groups(findings: object) -> list[dict[str, object]]:
    """Counts of findings and hosts per rule, worst rules first. COUNT(*) rather than of a
    column, so the (rule, status, host) index answers it alone."""
    rows = list(findings.order_by().values("rule_id").annotate(findings=Count("*"), hosts=Count("host", distinct=True)))
    for row in rows:
        rule = BY_ID.get(row["rule_id"])
        row["rule"], row["severity"] = rule, rule.severity if rule else Severity.INFO
    return sorted(rows, key=lambda r: (-r["severity"].rank, -r["findings"], r["rule_id"]))


def _group_hosts(findings: object, rule_id: str) -> list[dict[str, object]]:
    """The hosts of one group, most findings first: counted on the index, named after."""
    by_host = list(
        findings.filter(rule_id=rule_id).order_by().values("host_id").annotate(findings=Count("*")).order_by("-findings", "host_id")[:MAX_GROUP_HOSTS]
    )
    names = dict(DockerHost.objects.filter(pk__in=[row["host_id"] for row in by_host]).values_list("pk", "name"))
    rows = [{"host__name": names.get(row["host_id"], "?"), "findings": row["findings"]} for row in by_host]
    return sorted(rows, key=lambda r: (-r["findings"], r["host__name"]))


@require_GET
@permission_required("posture.view_finding", raise_exception=True)
def explorer(request: HtmxHttpRequest) -> HttpResponse:
    selection, errors = _selection(request)
    view = request.GET.get("view", "rows") if request.GET.get("view") in VIEWS else "rows"
    findings = selection.apply(Finding.objects.all())
    group = request.GET.get("group", "")
    context: dict[str, object] = {
        "selection": selection,
        "errors": errors,
        "params": {k: ", ".join(v) for k, v in selection.raw.items()},
        "view": view,
        "views": VIEWS,
        "rules": RULES,
        "severities": list(Severity),
        "statuses": STATUSES,
        "query": selection.querystring(view=view if view != "rows" else ""),
        "filter_query": selection.querystring(),
        # Drilling into a group replaces the rule (and a host link the host) rather than adding one.
        "rule_drill": urlencode([(k, v) for k, v in selection.params() if k != "rule"] + ([("view", view)] if view != "rows" else [])),
        "host_drill": urlencode([(k, v) for k, v in selection.params() if k not in ("rule", "host")]),
        "formats": sorted(FORMATS),
        "can_except": request.user.has_perm("posture.add_riskexception"),
    }
    if errors:
        context["page"] = None
    elif view == "rules":
        context["groups"] = _groups(findings)
        if group in BY_ID:
            context["group"], context["group_hosts"] = group, _group_hosts(findings, group)
    else:
        context["page"] = CappedPaginator(findings.for_explorer().select_related("host"), PER_PAGE).get_page(request.GET.get("page"))
    if request.GET.get("part") == "group-hosts":
        return render_page(request, "posture/explorer.html", context, parts=("group-hosts",))
    return render_page(request, "posture/explorer.html", context, partial="results" if request.htmx else None, status=400 if errors else 200)


@require_GET
@permission_required("posture.view_finding", raise_exception=True)
def export(request: HtmxHttpRequest, format: str) -> HttpResponse:
    """Exactly the filtered set, streamed: no list of 300,000 rows is ever built."""
    if format not in FORMATS:
        raise Http404("Export as csv, json or sarif.")
    try:
        selection = FindingFilter.parse(request.GET)
    except FilterError as exc:
        return HttpResponse(f"Bad filter: {exc}\n", status=400, content_type="text/plain; charset=utf-8")
    kind = FORMATS[format]
    findings = selection.apply(Finding.objects.all()).for_explorer()
    response = StreamingHttpResponse(kind.write(findings), content_type=kind.content_type)
    response["Content-Disposition"] = f'attachment; filename="findings-{timezone.now():%Y%m%d-%H%M}.{kind.extension}"'
    return response


@require_POST
@permission_required("posture.add_riskexception", raise_exception=True)
def except_selection(request: HtmxHttpRequest) -> HttpResponse:
    """ "Create exception from these": the selected findings (or the whole filtered set)
    → the exception form, pre-filled with the narrowest scope that covers them all."""
    if request.POST.get("all"):
        try:
            findings = FindingFilter.parse(request.POST).apply(Finding.objects.all())
        except FilterError:
            findings = Finding.objects.none()
    else:
        ids = [int(v) for v in request.POST.getlist("id") if v.isdigit()][: PER_PAGE * 4]
        findings = Finding.objects.filter(pk__in=ids)
    scope = narrowest_scope(findings)
    if not scope:
        messages.warning(request, "Select at least one finding first.")
        return redirect("explorer")
    return redirect(f"{reverse('exception-new')}?{urlencode(scope)}")
