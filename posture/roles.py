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
