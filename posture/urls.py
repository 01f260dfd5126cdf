from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.generic import RedirectView

from .views import alerts, auth, exceptions, explorer, findings, fleet, hosts, profile, reports, rules, topology

urlpatterns = [
    path("", fleet.fleet, name="fleet"),
    path("login/", login_not_required(auth.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("rules/", rules.rule_catalog, name="rules"),
    path("findings/", explorer.explorer, name="explorer"),
    path("findings/export.<str:format>", explorer.export, name="explorer-export"),
    path("findings/except/", explorer.except_selection, name="explorer-except"),
    path("exceptions/", exceptions.exception_list, name="exceptions"),
    path("exceptions/new/", exceptions.exception_new, name="exception-new"),
    path("exceptions/<int:pk>/", exceptions.exception_detail, name="exception"),
    path("exceptions/<int:pk>/edit/", exceptions.exception_edit, name="exception-edit"),
    path("exceptions/<int:pk>/remove/", exceptions.exception_remove, name="exception-remove"),
    path("hosts/new/", hosts.host_edit, name="host-new"),
    path("hosts/test/", hosts.host_test, name="host-test"),
    path("hosts/<str:name>/", hosts.host_detail, name="host"),
    path("hosts/<str:name>/edit/", hosts.host_edit, name="host-edit"),
    path("hosts/<str:name>/delete/", hosts.host_delete, name="host-delete"),
    path("hosts/<str:name>/poll/", hosts.poll_now, name="host-poll"),
    path("hosts/<str:name>/poll/status/", hosts.poll_status, name="host-poll-status"),
    path("hosts/<str:name>/topology/", topology.host_topology, name="host-topology"),
    path("hosts/<str:host>/findings/<int:pk>/", findings.finding_detail, name="finding"),
    path("hosts/<str:host>/findings/<int:pk>/accept/", findings.finding_accept, name="finding-accept"),
    path("reports/", reports.reports, name="reports"),
    path("reports/generate/", reports.generate_now, name="report-generate"),
    path("reports/schedules/new/", reports.schedule_new, name="schedule-new"),
    path("reports/schedules/<int:pk>/toggle/", reports.schedule_toggle, name="schedule-toggle"),
    path("reports/schedules/<int:pk>/delete/", reports.schedule_delete, name="schedule-delete"),
    path("reports/<int:pk>/download/", reports.download, name="report-download"),
    path("profile/", profile.profile, name="profile"),
    path("profile/tokens/new/", profile.token_new, name="token-new"),
    path("profile/tokens/<int:pk>/revoke/", profile.token_revoke, name="token-revoke"),
    path("alerts/", alerts.channels, name="channels"),
    path("alerts/channels/new/", alerts.channel_new, name="channel-new"),
    path("alerts/channels/<int:pk>/test/", alerts.channel_test, name="channel-test"),
    path("alerts/channels/<int:pk>/toggle/", alerts.channel_toggle, name="channel-toggle"),
    path("alerts/channels/<int:pk>/delete/", alerts.channel_delete, name="channel-delete"),
    path("alerts/rules/new/", alerts.rule_new, name="alert-rule-new"),
    path("alerts/rules/<int:pk>/delete/", alerts.rule_delete, name="alert-rule-delete"),
    path("api/", include("posture.api.urls")),
    # One login path, one throttle: the admin site signs in through the same page.
    path("admin/login/", login_not_required(RedirectView.as_view(pattern_name="login", query_string=True))),
    path("admin/", admin.site.urls),
]
