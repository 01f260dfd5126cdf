"""Accounts under attack: one throttled login path, proxy-aware addresses, roles that never
grant superuser, every account change audited, private files on disk."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from posture.models import AuditAction, AuditEntry, ReportSchedule

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
JOINED = {"date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}


def attempt(client, username: str, password: str, **meta: str):
    return client.post("/login/", {"username": username, "password": password}, **meta)


def test_login_is_throttled_per_user_and_address_without_a_permanent_lockout(client, viewer, settings):
    for _ in range(settings.LOGIN_THROTTLE_ATTEMPTS - 1):
        assert attempt(client, viewer.username, "wrong", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert attempt(client, viewer.username, "wrong", REMOTE_ADDR="203.0.113.9").status_code == 429  # the last allowed failure locks
    blocked = attempt(client, viewer.username, PASSWORD, REMOTE_ADDR="203.0.113.9")
    assert blocked.status_code == 429 and "Too many failed attempts" in blocked.content.decode()
    # The real user at their own address is not locked out by a stranger elsewhere.
    assert attempt(client, viewer.username, PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 302
    client.logout()
    call_command("axes_reset", stdout=io.StringIO())  # the cool-down passes
    assert attempt(client, viewer.username, PASSWORD, REMOTE_ADDR="203.0.113.9").status_code == 302


def test_the_admin_site_signs_in_through_the_same_throttled_page(client, admin, settings):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/admin/"
    for _ in range(settings.LOGIN_THROTTLE_ATTEMPTS):
        attempt(client, admin.username, "guess", REMOTE_ADDR="203.0.113.50")
    assert attempt(client, admin.username, PASSWORD, REMOTE_ADDR="203.0.113.50").status_code == 429
    # Posting to Django's own admin login form is throttled too: it authenticates through axes.
    direct = client.post("/admin/login/", {"username": admin.username, "password": PASSWORD}, REMOTE_ADDR="203.0.113.50")
    assert direct.status_code in (302, 429) and not client.session.get("_auth_user_id")


def test_behind_the_proxy_each_client_counts_apart(client, viewer, admin, settings):
    settings.POSTURE_BEHIND_PROXY = True
    proxy = {"REMOTE_ADDR": "10.0.0.2"}  # every request arrives from the proxy
    for _ in range(settings.LOGIN_THROTTLE_ATTEMPTS * 4):
        attempt(client, admin.username, "guess", HTTP_X_FORWARDED_FOR="203.0.113.66", **proxy)
    # The attacker is locked out; the admin and everyone else behind the same proxy are not.
    assert attempt(client, admin.username, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.66", **proxy).status_code == 429
    assert attempt(client, admin.username, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.20", **proxy).status_code == 302
    client.logout()
    assert attempt(client, viewer.username, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.21", **proxy).status_code == 302
    # A forged left-most entry changes nothing: the proxy's own (right-most) entry counts.
    client.logout()
    forged = attempt(client, admin.username, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.99, 203.0.113.66", **proxy)
    assert forged.status_code == 429


def test_an_admin_cannot_make_anyone_superuser_or_edit_a_superuser(client, admin):
    root = User.objects.create_superuser("root", "root@example.test", PASSWORD)
    admin.is_staff = True
    admin.save()
    client.force_login(admin)
    page = client.get(f"/admin/auth/user/{admin.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
    form = {"username": admin.username, "email": admin.email, "is_active": "on", "is_superuser": "on", "groups": [Group.objects.get(name="Admin").pk], **JOINED}
    client.post(f"/admin/auth/user/{admin.pk}/change/", form)
    admin.refresh_from_db()
    assert not admin.is_superuser
    assert client.post(f"/admin/auth/user/{root.pk}/change/", {"username": "root", **JOINED}).status_code == 403
    assert client.get(f"/admin/auth/user/{root.pk}/password/").status_code == 403
    assert client.get("/admin/auth/group/").status_code == 404  # roles are code, not editable


def test_a_role_change_in_the_admin_resets_flags_and_is_audited(client, admin, analyst):
    admin.is_staff = True
    admin.save()
    client.force_login(admin)
    form = {"username": analyst.username, "email": analyst.email, "is_active": "on", "groups": [Group.objects.get(name="Viewer").pk], **JOINED}
    response = client.post(f"/admin/auth/user/{analyst.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    analyst.refresh_from_db()
    assert [g.name for g in analyst.groups.all()] == ["Viewer"] and not analyst.is_staff
    entry = AuditEntry.objects.get(action=AuditAction.USER_ROLE)
    assert entry.actor == admin and entry.detail == {"role": "Viewer", "previous": "Analyst"}


def test_users_role_clears_superuser_and_staff(admin):
    admin.is_superuser = admin.is_staff = True
    admin.save()
    call_command("users", "role", admin.username, "Viewer", stdout=io.StringIO())
    admin.refresh_from_db()
    assert not admin.is_superuser and not admin.is_staff
    assert AuditEntry.objects.filter(action=AuditAction.USER_ROLE, target=admin.username).exists()


def test_schedule_changes_in_the_admin_are_audited(client, admin):
    schedule = ReportSchedule.objects.create(name="weekly", recipients="a@example.test")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    form = {"name": "weekly", "frequency": "daily", "weekday": 0, "day_of_month": 1, "at": "06:00", "recipients": "b@example.test", "enabled": "on"}
    assert client.post(f"/admin/posture/reportschedule/{schedule.pk}/change/", form).status_code == 302
    entry = AuditEntry.objects.get(action=AuditAction.SCHEDULE_CHANGE)
    assert entry.target == "weekly" and "recipients" in entry.detail["fields"]


def test_deletions_in_the_admin_are_audited_one_entry_per_object(client, admin):
    schedules = [ReportSchedule.objects.create(name=name) for name in ("daily", "weekly")]
    leaving = User.objects.create_user("leaving", password=PASSWORD)
    admin.is_staff = True
    admin.save()
    client.force_login(admin)
    # From the change list (a queryset) and from the object's own delete page.
    selected = {"action": "delete_selected", "_selected_action": [s.pk for s in schedules], "post": "yes"}
    assert client.post("/admin/posture/reportschedule/", selected).status_code == 302
    assert client.post(f"/admin/auth/user/{leaving.pk}/delete/", {"post": "yes"}).status_code == 302
    entries = AuditEntry.objects.filter(actor=admin).order_by("pk")
    assert [(e.action, e.target) for e in entries] == [
        (AuditAction.SCHEDULE_DELETE, "daily"),
        (AuditAction.SCHEDULE_DELETE, "weekly"),
        (AuditAction.USER_REMOVE, "leaving"),
    ]
    assert not ReportSchedule.objects.exists() and not User.objects.filter(username="leaving").exists()


def test_the_embedded_database_and_var_directory_are_private(tmp_path):
    var = tmp_path / "var"
    env = {"PATH": "/usr/bin:/bin", "POSTURE_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "posture.settings"}
    # Django opens and writes the database as migrate would (a full migrate takes seconds).
    write = "from django.db import connection; connection.cursor().execute('CREATE TABLE written (x int)')"
    subprocess.run([sys.executable, "manage.py", "shell", "-c", write], cwd=ROOT, env=env, check=True)
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for name in ("posture.sqlite3", "secret_key", "credentials.key"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600, name
    assert os.stat(var / "posture.sqlite3").st_size > 0
