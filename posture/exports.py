"""Findings as JSON, CSV and SARIF 2.1.0, hosts and exceptions as JSON, for scripts and
downloads (``manage.py findings``, the explorer's export links, ``hosts list``).

Every findings export streams: rows are read from the database in chunks
(``.iterator(chunk_size=CHUNK)``, a server-side cursor on PostgreSQL) and each is written
as soon as it is read, so 300,000 findings cost the memory of one chunk, not of the list.
The writers yield text; the command writes it to stdout, the page wraps it in a
``StreamingHttpResponse``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet

from .models import DockerHost, RiskException, Severity
from .models.findings import last_seen_at
from .rules import RULES

JSON_KEYS = ("host", "rule", "cis", "severity", "subject_type", "subject", "title", "evidence", "remediation", "running", "status", "first_seen", "last_seen")
CHUNK = 2000
# Read as columns, not model instances: the export does not need the rest of the row.
_COLUMNS = (
    "host__name",
    "host__last_success_at",
    "rule_id",
    "cis",
    "severity",
    "subject_type",
    "subject_name",
    "title",
    "evidence",
    "remediation",
    "running",
    "status",
    "first_seen",
    "last_seen",
    "fingerprint",
)
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """The stable export shape: exactly ``JSON_KEYS``."""
    return {
        "host": row["host__name"],
        "rule": row["rule_id"],
        "cis": row["cis"] or None,
        "severity": row["severity"],
        "subject_type": row["subject_type"],
        "subject": row["subject_name"],
        "title": row["title"],
        "evidence": row["evidence"],
        "remediation": row["remediation"],
        "running": row["running"],
        "status": row["status"],
        "first_seen": _iso(row["first_seen"]),
        "last_seen": _iso(last_seen_at(row["status"], row["last_seen"], row["host__last_success_at"])),
    }


def _rows(findings: QuerySet) -> Iterator[dict[str, Any]]:
    return findings.values(*_COLUMNS).iterator(chunk_size=CHUNK)


def records(findings: QuerySet) -> Iterator[dict[str, Any]]:
    return (_record(row) for row in _rows(findings))


def json_lines(findings: QuerySet) -> Iterator[str]:
    """A JSON array, one finding per line."""
    yield "["
    sep = "\n"
    for record in records(findings):
        yield sep + json.dumps(record)
        sep = ",\n"
    yield "\n]\n"


def neutralise(cell: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell


class _Line:
    """A file-like object whose ``write`` hands the line back, so csv.writer can stream."""

    def write(self, text: str) -> str:
        return text


def csv_lines(findings: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(JSON_KEYS)
    for record in records(findings):
        record["evidence"] = json.dumps(record["evidence"], sort_keys=True)
        yield writer.writerow([neutralise(record[k]) for k in JSON_KEYS])


def _sarif_rules() -> list[dict[str, Any]]:
    return [
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


def _sarif_result(row: dict[str, Any]) -> dict[str, Any]:
    host, subject, kind = row["host__name"], row["subject_name"], row["subject_type"]
    return {
        "ruleId": row["rule_id"],
        "level": Severity(row["severity"]).sarif_level,
        "message": {"text": f"{row['title']}: {subject} on {host}"},
        "locations": [{"logicalLocations": [{"name": subject, "fullyQualifiedName": f"{host}/{kind}/{subject}", "kind": kind}]}],
        "partialFingerprints": {"postureFingerprint": f"{host}|{row['fingerprint']}"},
        "properties": {"severity": row["severity"], "status": row["status"], "evidence": row["evidence"], "remediation": row["remediation"]},
    }


def sarif_lines(findings: QuerySet) -> Iterator[str]:
    """SARIF 2.1.0: the document's head, each result as it is read, then its tail."""
    tool = {"driver": {"name": "Posture", "rules": _sarif_rules()}}
    yield '{"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [{"tool": ' + json.dumps(tool) + ', "results": ['
    sep = "\n"
    for row in _rows(findings):
        yield sep + json.dumps(_sarif_result(row))
        sep = ",\n"
    yield "\n]}]}\n"


@dataclass(frozen=True)
class Format:
    write: Any  # QuerySet → Iterator[str]
    content_type: str
    extension: str


FORMATS = {
    "json": Format(json_lines, "application/json", "json"),
    "csv": Format(csv_lines, "text/csv; charset=utf-8", "csv"),
    "sarif": Format(sarif_lines, "application/sarif+json", "sarif"),
}


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


def exception_listing(exception: RiskException) -> dict[str, object]:
    """``exceptions list --format json``; expects ``with_coverage()`` and the host and owner loaded."""
    return {
        "id": exception.pk,
        "rule": exception.rule_id or None,
        "severity": exception.max_severity or None,  # "this severity and below" when no rule
        "scope": {
            "host": exception.host.name if exception.host_id else None,
            "labels": exception.labels,
            "image": exception.image or None,
            "project": exception.project or None,
            "name": exception.name or None,
            "finding": exception.finding_id,
        },
        "justification": exception.justification,
        "owner": exception.owner.get_username() if exception.owner else None,
        "expires": _iso(exception.expires_at),
        "status": exception.status,
        "covered": getattr(exception, "covered_findings", None),
        "hosts": getattr(exception, "covered_hosts", None),
        "created_at": _iso(exception.created_at),
    }
