"""Full pages and htmx partials from the same view and template."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def render_page(
    request: HtmxHttpRequest, template: str, context: dict[str, Any], *, partial: str | None = None, parts: tuple[str, ...] = (), status: int = 200
) -> HttpResponse:
    """The whole page, or only ``template#partial`` when htmx asks for a part.

    The view names the part (``partial``), or lets an htmx request choose one of
    ``parts`` with ``?part=NAME``; any other name is ignored, so a client never picks a
    template. Full loads (and history restores, which must rebuild the page) get everything.
    """
    asked = request.GET.get("part", "")
    part = asked if asked in parts else partial
    if request.htmx and not request.htmx.history_restore_request and part:
        return render(request, f"{template}#{part}", context, status=status)
    return render(request, template, context, status=status)


def paginate(request: HttpRequest, items: Any, per_page: int = 25, param: str = "page") -> Page:
    """One page of ``items``, the number read from ``?{param}=`` (several lists on one page each have their own)."""
    return Paginator(items, per_page).get_page(request.GET.get(param))


def query_without(request: HttpRequest, *names: str) -> str:
    """The request's query string less ``names`` and ``part``, ending in ``&`` when not
    empty: the prefix of one list's pager links, which keep every other list's page."""
    query = request.GET.copy()
    for name in (*names, "part"):
        query.pop(name, None)
    return f"{query.urlencode()}&" if query else ""
