"""The one login page, throttled by django-axes per (user, client address).

Admin's login redirects here, so there is one login path and one throttle. Failures are
counted per (username, address): a stranger guessing elsewhere slows only themselves,
never the real user at their own desk, and behind the reverse proxy the address is the
client's as the proxy reports it, not the proxy's own.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme


def client_address(request: HttpRequest) -> str | None:
    """The client's address: ``REMOTE_ADDR``, or behind ``POSTURE_BEHIND_PROXY`` the entry
    the trusted proxies appended to ``X-Forwarded-For`` (the right-most ``PROXY_COUNT``-th;
    anything left of it was written by the client and proves nothing)."""
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    if not settings.POSTURE_BEHIND_PROXY:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < settings.POSTURE_PROXY_COUNT:
        return remote
    return _address(hops[-settings.POSTURE_PROXY_COUNT]) or remote


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def locked_out(request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None) -> HttpResponse:
    """Axes' answer while a (user, address) pair cools down: the login page, with why."""
    minutes = max(1, settings.LOGIN_THROTTLE_SECONDS // 60)
    message = f"Too many failed attempts. Wait {minutes} minute{'s' if minutes > 1 else ''} and try again."
    return render(request, "posture/login.html", {"locked_out": message, "next": _next(request)}, status=429)


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else ""


class LoginView(auth_views.LoginView):
    template_name = "posture/login.html"
    redirect_authenticated_user = True
