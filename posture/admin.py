"""Django admin: users and groups for Admins, and a read-only audit log."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEntry, ReportSchedule


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_name", "action", "target")
    list_filter = ("action",)
    search_fields = ("actor_name", "target")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ReportSchedule)
class ReportScheduleAdmin(admin.ModelAdmin):
    """Edit or remove schedules; they are created on the Reports page."""

    list_display = ("name", "frequency", "at", "recipients", "enabled", "next_run_at")
    list_filter = ("frequency", "enabled")
