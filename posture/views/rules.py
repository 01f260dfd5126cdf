"""The rule catalog, with how many hosts and containers each rule hits now."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Q
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from posture.models import Finding
from posture.rules import KNOWN_GAPS, RULES

from .rendering import HtmxHttpRequest, render_page


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def rule_catalog(request: HtmxHttpRequest) -> HttpResponse:
    hits = {
        row["rule_id"]: row
        for row in Finding.objects.current()
        .values("rule_id")
        .annotate(hosts=Count("host", distinct=True), containers=Count("subject_key", filter=Q(subject_type="container"), distinct=True), findings=Count("id"))
    }
    rows = [(rule, hits.get(rule.id, {})) for rule in RULES]
    return render_page(request, "posture/rules.html", {"rows": rows, "gaps": KNOWN_GAPS})
