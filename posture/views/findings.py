"""A finding's evidence, remediation and timeline; accepting its risk."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Page, Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from posture.forms import AcceptRiskForm
from posture.models import Finding, FindingStatus
from posture.models.exceptions import start_of

from .rendering import HtmxHttpRequest, render_page


def get_finding(host: str, pk: int) -> Finding:
    return get_object_or_404(Finding.objects.select_related("host", "exception__owner", "exception__host"), pk=pk, host__name=host)


# A finding that flaps for months has thousands of events: the page shows the latest of them.
EVENTS_PER_PAGE = 100


def _timeline(request: HtmxHttpRequest, finding: Finding) -> Page:
    """One page of the finding's events in time order; without ``?events=``, the latest page."""
    paginator = Paginator(finding.events.select_related("actor"), EVENTS_PER_PAGE)
    return paginator.get_page(request.GET.get("events") or paginator.num_pages)


def _context(request: HtmxHttpRequest, finding: Finding, form: AcceptRiskForm | None = None) -> dict[str, object]:
    return {
        "finding": finding,
        "host": finding.host,
        "rule": finding.rule,
        "evidence": json.dumps(finding.evidence, indent=2, sort_keys=True),
        "events": _timeline(request, finding),
        "own_exceptions": finding.exceptions.select_related("owner"),
        "form": form or AcceptRiskForm(),
        "can_accept": request.user.has_perm("posture.accept_risk"),
    }


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def finding_detail(request: HtmxHttpRequest, host: str, pk: int) -> HttpResponse:
    finding = get_finding(host, pk)
    return render_page(request, "posture/finding.html", _context(request, finding))


@require_POST
@permission_required("posture.accept_risk", raise_exception=True)
def finding_accept(request: HtmxHttpRequest, host: str, pk: int) -> HttpResponse:
    finding = get_finding(host, pk)
    form = AcceptRiskForm(request.POST)
    if finding.status == FindingStatus.RESOLVED:
        form.add_error(None, "This finding is resolved; there is no risk left to accept.")
    if not form.is_valid():
        return render_page(request, "posture/finding.html", _context(request, finding, form), partial="accept" if request.htmx else None, status=400)
    until = start_of(form.cleaned_data["expires_on"])
    finding.accept(by=request.user, until=until, justification=form.cleaned_data["justification"])
    messages.success(request, f"Risk accepted until {until:%d %b %Y}.")
    if request.htmx:
        # The whole page changes (status, timeline, score): navigate rather than swap.
        return HttpResponseClientRedirect(reverse("finding", kwargs={"host": host, "pk": pk}))
    return redirect("finding", host=host, pk=pk)
