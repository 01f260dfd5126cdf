"""Findings as JSON, CSV and SARIF 2.1.0, and hosts as JSON, for scripts (``manage.py findings``, ``hosts list``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .models import DockerHost, Finding, Severity
from .rules import RULES

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
JSON_KEYS = ("host", "rule", "cis", "severity", "subject_type", "subject", "title", "evidence", "remediation", "running", "status", "first_seen", "last_seen")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def as_record(finding: Finding) -> dict[str, Any]:
    """The stable export shape: exactly ``JSON_KEYS``."""
    return {
        "host": finding.host.name,
        "rule": finding.rule_id,
        "cis": finding.cis or None,
        "severity": finding.severity,
        "subject_type": finding.subject_type,
        "subject": finding.subject_name,
        "title": finding.title,
        "evidence": finding.evidence,
        "remediation": finding.remediation,
        "running": finding.running,
        "status": finding.status,
        "first_seen": _iso(finding.first_seen),
        "last_seen": _iso(finding.last_seen_at),
    }


def to_json(findings: Iterable[Finding]) -> str:
    return json.dumps([as_record(f) for f in findings], indent=2)


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a
    leading apostrophe, the usual neutraliser. Non-strings pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(findings: Iterable[Finding]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=JSON_KEYS)
    writer.writeheader()
    for f in findings:
        row = as_record(f)
        row["evidence"] = json.dumps(row["evidence"], sort_keys=True)
        writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
    return out.getvalue()


def to_sarif(findings: Iterable[Finding]) -> str:
    rules = [
        {
            "id": r.id,
            "name": r.id,
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.rationale},
            "properties": {"cis": r.cis, "severity": r.severity.value},
            "defaultConfiguration": {"level": r.severity.sarif_level},
        }
        for r in RULES
    ]
    results = [
        {
            "ruleId": f.rule_id,
            "level": Severity(f.severity).sarif_level,
            "message": {"text": f"{f.title}: {f.subject_name} on {f.host.name}"},
            "locations": [
                {
                    "logicalLocations": [
                        {"name": f.subject_name, "fullyQualifiedName": f"{f.host.name}/{f.subject_type}/{f.subject_name}", "kind": f.subject_type}
                    ]
                }
            ],
            "partialFingerprints": {"postureFingerprint": f"{f.host.name}|{f.fingerprint}"},
            "properties": {"severity": f.severity, "status": f.status, "evidence": f.evidence, "remediation": f.remediation},
        }
        for f in findings
    ]
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "Posture", "rules": rules}}, "results": results}],
    }
    return json.dumps(doc, indent=2)


FORMATS = {"json": to_json, "csv": to_csv, "sarif": to_sarif}


def host_listing(host: DockerHost) -> dict[str, object]:
    """``hosts list --format json``; expects ``with_poll_counts()``."""
    return {
        "name": host.name,
        "url": host.url,
        "enabled": host.enabled,
        "interval": host.poll_interval,
        "labels": host.labels,
        "last_poll_at": _iso(host.last_poll_at),
        "last_status": host.display_status.value,
        "last_error": host.last_error,
        "polls": getattr(host, "completed_polls", None),
        "risk_score": host.risk_score,
        "host_listeners": host.host_listeners,
        # Annotated by HostQuerySet.with_listener_errors(), read from the stored snapshot.
        "listeners_error": getattr(host, "listeners_error", None) or "",
    }
