"""The signed-in user's profile: personal API tokens, created (shown once) and revoked."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from posture.models import ApiToken

from .rendering import HtmxHttpRequest, render_page


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What it is for, e.g. “SIEM export”.")
    days = forms.IntegerField(label="Expires after (days)", min_value=1, max_value=366, initial=90, required=False, help_text="Empty: never.")


def _context(request: HtmxHttpRequest, form: TokenForm | None = None, secret: str = "") -> dict[str, object]:
    return {"tokens": ApiToken.objects.filter(user=request.user), "form": form or TokenForm(), "secret": secret}


@require_GET
def profile(request: HtmxHttpRequest) -> HttpResponse:
    return render_page(request, "posture/profile.html", _context(request))


@require_POST
def token_new(request: HtmxHttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if not form.is_valid():
        return render_page(request, "posture/profile.html", _context(request, form), status=400)
    _token, secret = ApiToken.issue(request.user, actor=request.user, name=form.cleaned_data["name"], days=form.cleaned_data["days"])
    # Rendered, not redirected: the secret exists only in this response and is never stored.
    return render_page(request, "posture/profile.html", _context(request, secret=secret))


@require_POST
def token_revoke(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user, revoked_at__isnull=True)
    token.revoke(actor=request.user)
    messages.success(request, f"Revoked {token.display}.")
    return redirect("profile")
