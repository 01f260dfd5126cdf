"""Full pages and htmx partials from the same view and template."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def render_page(request: HtmxHttpRequest, template: str, context: dict[str, Any], *, partial: str | None = None, status: int = 200) -> HttpResponse:
    """The whole page, or only ``template#partial`` when htmx asks for a part.

    htmx requests name the part with ``?part=NAME`` or target it by id; full loads
    (and history restores, which must rebuild the page) get everything.
    """
    part = request.GET.get("part") or partial
    if request.htmx and not request.htmx.history_restore_request and part:
        return render(request, f"{template}#{part}", context, status=status)
    return render(request, template, context, status=status)


def paginate(request: HttpRequest, items: Any, per_page: int = 25) -> Page:
    return Paginator(items, per_page).get_page(request.GET.get("page"))
