"""Login with throttling that slows guessing without locking anyone out for good."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.forms import ValidationError
from django.http import HttpRequest, HttpResponse


def _client(request: HttpRequest) -> str:
    # Behind a proxy, set POSTURE_BEHIND_PROXY and make it overwrite X-Forwarded-For.
    return request.META.get("REMOTE_ADDR", "?")


def _keys(request: HttpRequest, username: str) -> tuple[str, str]:
    # Failures are counted per (user, address) and per address: a stranger guessing
    # from elsewhere slows themselves down, not the real user at their own desk.
    return f"login-fail:{username.lower()}:{_client(request)}", f"login-fail-ip:{_client(request)}"


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self) -> dict:
        username = self.data.get("username", "")
        pair, ip = _keys(self.request, username)
        limit, window = settings.LOGIN_THROTTLE_ATTEMPTS, settings.LOGIN_THROTTLE_SECONDS
        if cache.get(pair, 0) >= limit or cache.get(ip, 0) >= limit * 4:
            raise ValidationError(f"Too many failed attempts. Wait {window // 60} minutes and try again.", code="throttled")
        try:
            return super().clean()
        except ValidationError:
            for key in (pair, ip):
                cache.add(key, 0, window)
                cache.incr(key)
            raise


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "posture/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: ThrottledAuthenticationForm) -> HttpResponse:
        cache.delete(_keys(self.request, form.get_user().get_username())[0])
        return super().form_valid(form)
