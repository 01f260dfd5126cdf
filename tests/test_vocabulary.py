"""One source of truth for each vocabulary, and settings that refuse what they cannot read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from posture.models import AuditAction, AuditEntry, DockerHost, EventKind, ExceptionStatus, FindingStatus, HostStatus, PollStatus, ReportStatus, Severity
from posture.rules import RULES

ROOT = Path(__file__).resolve().parent.parent


def test_severity_order_weights_colours_and_sarif_levels_come_from_one_enum():
    assert [s.value for s in Severity] == ["critical", "high", "medium", "low", "info"]
    assert [s.rank for s in Severity] == sorted((s.rank for s in Severity), reverse=True)
    assert Severity.at_least("high") == [Severity.CRITICAL, Severity.HIGH]
    assert {s.sarif_level for s in Severity} == {"error", "warning", "note"}
    assert all(r.severity in Severity for r in RULES)


def test_no_other_module_spells_out_the_severity_table():
    table = re.compile(r'"critical"\s*:|\("critical",\s*"high"')
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "posture").rglob("*.py") if "migrations" not in p.parts and table.search(p.read_text())]
    assert offenders == ["posture/rules/base.py"]


def test_the_stylesheet_uses_the_severity_colours():
    css = (ROOT / "static" / "posture" / "posture.css").read_text()
    for severity, var in zip(Severity, ("crit", "high", "med", "low", "info"), strict=True):
        assert f"--{var}: {severity.colour};" in css, severity


def test_templates_and_views_compare_no_status_literals():
    statuses = {*HostStatus.values, *FindingStatus.values, *PollStatus.values, *ExceptionStatus.values, *ReportStatus.values, *EventKind.values}
    # A comparison (== "open"), a filter argument (status="open") or a query string (status=open).
    literal = re.compile(r'(?:==\s*|status=|status__in=\[?)"?([a-z_]+)"?')
    found = []
    for path in [*(ROOT / "templates").rglob("*.html"), *(ROOT / "posture" / "views").glob("*.py"), ROOT / "posture" / "models" / "filters.py"]:
        found += [(path.name, m) for m in literal.findall(path.read_text()) if m in statuses]
    assert found == []


def test_stale_is_a_status_of_its_own():
    host = DockerHost(name="h", poll_interval=60, last_status=HostStatus.OK)
    host.created_at = host.last_success_at = None
    assert host.display_status == HostStatus.OK
    assert HostStatus.STALE.label == "Stale" and HostStatus.STALE.icon == "⚠"


@pytest.mark.django_db
def test_every_registration_path_validates_and_audits(tmp_path):
    call_command("hosts", "add", "cli-host", f"unix://{tmp_path}/docker.sock")
    call_command("bootstrap", "--engine", f"unix://{tmp_path}/absent.sock")  # no engine there: nothing registered
    entries = list(AuditEntry.objects.filter(action=AuditAction.HOST_ADD).values_list("target", flat=True))
    assert entries == ["cli-host"]
    assert list(DockerHost.objects.values_list("name", flat=True)) == ["cli-host"]


@pytest.mark.parametrize("value", ["ture", "enabled", "2"])
def test_a_yes_no_setting_that_is_neither_stops_start_up(value, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "POSTURE_VAR_DIR": str(tmp_path), "POSTURE_HTTPS": value, "DJANGO_SETTINGS_MODULE": "posture.settings"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert f"POSTURE_HTTPS={value!r} is neither true nor false" in result.stderr
