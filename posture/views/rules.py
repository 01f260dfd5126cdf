"""The rule catalog, with how many hosts and containers each rule hits now."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import permission_required
from django.core.cache import cache
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from posture.models import Finding
from posture.rules import KNOWN_GAPS, RULES

from .rendering import HtmxHttpRequest, render_page

# Counting every current finding of a 10,000-host fleet by rule reads ~300,000 index
# entries (a few hundred ms): the page counts at most once a minute, shared by every web
# process through the cache, and says when it counted.
HITS_CACHE_KEY = "posture:rule-hits"
HITS_FOR_SECONDS = 60


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def rule_catalog(request: HtmxHttpRequest) -> HttpResponse:
    counted_at, hits = cache.get_or_set(HITS_CACHE_KEY, _count_hits, HITS_FOR_SECONDS)
    rows = [(rule, hits.get(rule.id, {})) for rule in RULES]
    return render_page(request, "posture/rules.html", {"rows": rows, "gaps": KNOWN_GAPS, "counted_at": counted_at})


def _count_hits() -> tuple[datetime, dict[str, dict[str, int]]]:
    return timezone.now(), Finding.objects.current().rule_hits()
