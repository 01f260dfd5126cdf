"""The command-line interface that scripts depend on."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.utils import timezone

from posture.exports import JSON_KEYS
from posture.management.commands.rulesdoc import render
from posture.models import AuditEntry, DockerHost, HostStatus

from . import factories
from .builders import container, port, snapshot

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_hosts_add_list_remove(db):
    assert "added edge-1" in run(
        "hosts", "add", "edge-1", "unix:///run/posture-test/edge-1.sock", "--interval", "120", "--label", "env=prod", "--label", "team=payments"
    )
    host, now = DockerHost.objects.get(name="edge-1"), timezone.now()
    factories.poll_run(host, at=now)  # one good poll, as `poll edge-1` leaves it
    DockerHost.objects.filter(pk=host.pk).update(last_status=HostStatus.OK, last_poll_at=now, last_success_at=now)
    (listed,) = json.loads(run("hosts", "list", "--format", "json"))
    assert {"name", "url", "enabled", "interval", "last_poll_at", "last_status", "last_error", "polls"} <= set(listed)
    assert (listed["name"], listed["interval"], listed["polls"], listed["last_status"]) == ("edge-1", 120, 1, "ok")
    assert DockerHost.objects.get(name="edge-1").labels == {"env": "prod", "team": "payments"}
    assert "removed edge-1" in run("hosts", "remove", "edge-1")
    assert not DockerHost.objects.exists()
    assert list(AuditEntry.objects.order_by("at").values_list("action", flat=True)) == ["host.add", "host.remove"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad name!", "unix:///x.sock"], "name: Use letters"),
        (["h", "tcp://10.0.0.1:2375"], "plain tcp:// without TLS"),
        (["h", "tcp://169.254.169.254:2375", "--insecure"], "link-local"),
        (["h", "unix:///x.sock", "--label", "novalue"], "KEY=VALUE"),
        (["h", "unix:///x.sock", "--tls-ca", "/nonexistent/ca.pem"], "cannot read CA file"),
        (["h", "unix:///x.sock", "--interval", "1"], "poll_interval"),
    ],
)
def test_hosts_add_rejects_bad_input_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        run("hosts", "add", *args)
    assert not DockerHost.objects.exists()


def test_insecure_plain_tcp_is_allowed_when_marked(db):
    run("hosts", "add", "legacy", "tcp://10.0.0.1:2375", "--insecure")
    assert DockerHost.objects.get(name="legacy").insecure


def test_poll_exits_1_with_one_clear_line_when_unreachable(tmp_path):
    DockerHost.objects.create(name="gone", url=f"unix://{tmp_path}/gone.sock")
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("poll", "gone", stdout=io.StringIO(), stderr=err)
    assert exit_.value.code == 1
    assert err.getvalue().strip().splitlines() == [f"gone: cannot reach unix://{tmp_path}/gone.sock: no such file or directory"]


def test_findings_formats(db):
    factories.polled("db-1", snapshot([container("pg", ports=[port(5432, 15732)]), container("idle", running=False, network_mode="host")]))
    records = json.loads(run("findings", "--host", "db-1"))
    assert records and all(tuple(r) == JSON_KEYS for r in records)
    pg = next(r for r in records if r["rule"] == "port-sensitive-service-exposed")
    assert (pg["host"], pg["cis"], pg["subject_type"], pg["subject"], pg["running"], pg["status"]) == ("db-1", None, "container", "pg", True, "open")
    assert pg["first_seen"].endswith("Z") and "127.0.0.1:15732:5432" in pg["remediation"]
    assert next(r for r in records if r["rule"] == "host-network")["running"] is False
    daemon = next(r for r in records if r["subject_type"] == "daemon")
    assert daemon["subject"] == "db-1" and daemon["running"] is None

    assert json.loads(run("findings", "--status", "resolved")) == []
    assert {r["severity"] for r in json.loads(run("findings", "--severity", "high"))} <= {"critical", "high"}
    rows = list(csv.DictReader(io.StringIO(run("findings", "--format", "csv"))))
    assert len(rows) == len(records) and json.loads(rows[0]["evidence"])
    sarif = json.loads(run("findings", "--format", "sarif"))
    assert sarif["version"] == "2.1.0" and len(sarif["runs"][0]["results"]) == len(records)


def test_findings_for_an_unknown_host_is_an_error(db):
    with pytest.raises(CommandError, match="no host named nope"):
        run("findings", "--host", "nope")


def test_docs_rules_md_is_generated_from_the_catalog():
    assert (settings.BASE_DIR / "docs" / "rules.md").read_text() == render(), "run: python manage.py rulesdoc --write"


def test_users_are_created_with_a_role_and_can_change_it(db):
    out = run("users", "add", "dana", "--role", "Analyst", "--email", "dana@example.test")
    password = out.split("password: ")[1].split()[0]
    user = authenticate(RequestFactory().post("/login/"), username="dana", password=password)
    assert user and user.has_perm("posture.accept_risk") and not user.has_perm("posture.manage_hosts") and not user.is_staff
    run("users", "role", "dana", "Admin")
    user = type(user).objects.get(pk=user.pk)
    assert user.has_perm("posture.manage_hosts") and user.is_staff
    (listed,) = json.loads(run("users", "list", "--format", "json"))
    assert listed["roles"] == ["Admin"]
    with pytest.raises(CommandError, match="already exists"):
        run("users", "add", "dana", "--role", "Viewer")
