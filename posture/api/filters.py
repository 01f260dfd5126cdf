"""Findings filtering for the API, in one function so a richer filter can replace it."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ValidationError
from rest_framework.exceptions import ValidationError as BadRequest

from posture.labels import parse_label
from posture.models import DockerHost, FindingStatus, Severity
from posture.models.querysets import FindingQuerySet

# Query parameters this filter reads, for the schema.
FINDING_FILTERS = {
    "host": "host name",
    "rule": "rule id",
    "severity": "this severity or worse: " + ", ".join(Severity.values()),
    "status": "open (default), accepted, resolved or all",
    "label": "KEY=VALUE: hosts carrying this label",
}


def label_param(text: str) -> dict[str, str]:
    """``?label=KEY=VALUE`` as a one-label scope; 400 if it is not that."""
    try:
        return dict([parse_label(text)])
    except ValidationError as exc:
        raise BadRequest({"label": exc.messages}) from None


def filter_findings(findings: FindingQuerySet, params: Mapping[str, str]) -> FindingQuerySet:
    """``findings`` narrowed by the query parameters of ``FINDING_FILTERS``; 400 on a bad value."""
    status = params.get("status", FindingStatus.OPEN)
    if status not in [*FindingStatus.values, "all"]:
        raise BadRequest({"status": f"one of {', '.join([*FindingStatus.values, 'all'])}"})
    findings = findings.with_status(status)
    if params.get("host"):
        findings = findings.filter(host__name=params["host"])
    if params.get("rule"):
        findings = findings.filter(rule_id=params["rule"])
    if params.get("severity"):
        if params["severity"] not in Severity.values():
            raise BadRequest({"severity": f"one of {', '.join(Severity.values())}"})
        findings = findings.at_least(params["severity"])
    if params.get("label"):
        findings = findings.filter(host__in=DockerHost.objects.with_labels(label_param(params["label"])))
    return findings
