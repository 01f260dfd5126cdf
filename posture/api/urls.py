from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import DefaultRouter

from .auth import BearerTokenAuthentication
from .views import AcceptanceViewSet, ExceptionViewSet, FindingViewSet, HostViewSet, ReportViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("hosts", HostViewSet, basename="api-host")
router.register("findings", FindingViewSet, basename="api-finding")
router.register("exceptions", ExceptionViewSet, basename="api-exception")
router.register("acceptances", AcceptanceViewSet, basename="api-acceptance")
router.register("reports", ReportViewSet, basename="api-report")

# The schema and its docs page are the only API views a signed-in browser may read
# without a token: they describe the API, they hold no data.
docs_auth = {"authentication_classes": [BearerTokenAuthentication, SessionAuthentication], "permission_classes": [IsAuthenticated]}

urlpatterns = [
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(**docs_auth), name="api-schema"),
    path(
        "docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="posture/api_docs.html", **docs_auth)),
        name="api-docs",
    ),
]
