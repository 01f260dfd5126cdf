from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import path

from .views import auth, exceptions, explorer, findings, fleet, hosts, reports, rules

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
    path("hosts/<str:host>/findings/<int:pk>/", findings.finding_detail, name="finding"),
    path("hosts/<str:host>/findings/<int:pk>/accept/", findings.finding_accept, name="finding-accept"),
    path("reports/", reports.reports, name="reports"),
    path("reports/generate/", reports.generate_now, name="report-generate"),
    path("reports/schedules/new/", reports.schedule_new, name="schedule-new"),
    path("reports/schedules/<int:pk>/toggle/", reports.schedule_toggle, name="schedule-toggle"),
    path("reports/schedules/<int:pk>/delete/", reports.schedule_delete, name="schedule-delete"),
    path("reports/<int:pk>/download/", reports.download, name="report-download"),
    path("admin/", admin.site.urls),
]
