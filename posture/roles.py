"""The three roles as Django groups, kept in step with the code after every migrate."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

VIEWER = ["posture.view_dockerhost", "posture.view_finding", "posture.view_report", "posture.view_reportschedule", "posture.view_riskexception"]
ANALYST = [
    *VIEWER,
    "posture.poll_host",
    "posture.accept_risk",
    "posture.add_riskexception",
    "posture.change_riskexception",
    "posture.delete_riskexception",
    "posture.add_report",
    "posture.add_reportschedule",
    "posture.change_reportschedule",
]
ADMIN = [
    *ANALYST,
    "posture.manage_hosts",
    "posture.delete_reportschedule",
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.delete_user",
    "posture.view_auditentry",
    "posture.manage_channels",
]
ROLES = {"Viewer": VIEWER, "Analyst": ANALYST, "Admin": ADMIN}


def ensure_roles(**kwargs: Any) -> None:
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app, codename = perm.split(".")
            wanted += list(Permission.objects.filter(content_type__app_label=app, codename=codename))
        group.permissions.set(wanted)


def role_of(user: Any) -> str | None:
    """The user's role: the first of their groups that is a role (users hold one)."""
    return next((g.name for g in user.groups.all() if g.name in ROLES), None)


def sync_flags(user: Any) -> None:
    """Staff status follows the role (Admins use Django's admin site); superuser status is
    never granted by a role change, only cleared by one."""
    user.is_staff = role_of(user) == "Admin"
    user.is_superuser = False
    user.save(update_fields=["is_staff", "is_superuser"])


def assign_role(user: Any, role: str) -> None:
    """Give ``user`` exactly ``role``; both flags reset to what that role implies."""
    user.groups.set([Group.objects.get(name=role)])
    sync_flags(user)
