"""Django admin: users for Admins (roles, never superuser), schedules, and a read-only audit log.

Every change made here is audited in the transaction the admin wraps around it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.forms import ModelForm
from django.http import HttpRequest

from .models import AuditAction, AuditEntry, ReportSchedule
from .roles import role_of, sync_flags

User = get_user_model()

# What only a superuser may touch: who is a superuser, staff (it follows the role) and
# permissions outside the roles. An Admin who could tick these could make themselves root.
_PRIVILEGED_FIELDS = ("is_superuser", "is_staff", "user_permissions")


class AuditedDeletes:
    """Deletions from a change list or an object page, one audit entry per object, in the
    transaction the admin wraps around them."""

    delete_action: AuditAction

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        AuditEntry.log(request.user, self.delete_action, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            AuditEntry.log(request.user, self.delete_action, obj)
        super().delete_queryset(request, queryset)


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
class ReportScheduleAdmin(AuditedDeletes, admin.ModelAdmin):
    """Edit or remove schedules; they are created on the Reports page."""

    delete_action = AuditAction.SCHEDULE_DELETE
    list_display = ("name", "frequency", "at", "recipients", "enabled", "next_run_at")
    list_filter = ("frequency", "enabled")

    def save_model(self, request: HttpRequest, obj: ReportSchedule, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        action = AuditAction.SCHEDULE_CHANGE if change else AuditAction.SCHEDULE_ADD
        AuditEntry.log(request.user, action, obj, fields=sorted(form.changed_data), recipients=obj.recipient_list)


admin.site.unregister(User)
admin.site.unregister(Group)  # roles are kept in step with the code (posture/roles.py), not edited


@admin.register(User)
class PostureUserAdmin(AuditedDeletes, UserAdmin):
    delete_action = AuditAction.USER_REMOVE

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [(name, {**opts, "fields": tuple(f for f in opts["fields"] if f not in _PRIVILEGED_FIELDS)}) for name, opts in fieldsets]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An Admin who could edit a superuser could reset its password and become it.
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["help_text"] = "The user's role. Staff status follows it: Admins get it, others lose it."
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        user = form.instance
        before = role_of(user) if change else None
        super().save_related(request, form, formsets, change)
        after = role_of(user)
        if not request.user.is_superuser:
            sync_flags(user)
        if not change:
            AuditEntry.log(request.user, AuditAction.USER_ADD, user, role=after)
        elif before != after:
            AuditEntry.log(request.user, AuditAction.USER_ROLE, user, role=after, previous=before)
        elif form.changed_data:
            AuditEntry.log(request.user, AuditAction.USER_CHANGE, user, fields=sorted(form.changed_data))
