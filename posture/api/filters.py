"""Findings filtering for the API: the explorer's ``FindingFilter``, so a filter gives the
same rows on the page, in ``manage.py findings`` and here."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError as BadRequest

from posture.labels import parse_label
from posture.models import Severity
from posture.models.filters import FilterError, FindingFilter

# Query parameters the filter reads, for the schema (the explorer's names).
FINDING_FILTERS = {
    "q": "free text over title and subject",
    "rule": "rule id (repeatable or comma-separated)",
    "cis": "CIS Docker Benchmark item, e.g. 5.14",
    "severity": "this severity or worse: " + ", ".join(Severity.values()),
    "status": "open (default), accepted, resolved or all",
    "host": "host name (repeatable or comma-separated)",
    "label": "KEY=VALUE: hosts carrying this label (repeatable; all must match)",
    "image": "image glob, e.g. traefik:*",
    "project": "compose project",
    "name": "container name glob",
    "since": "first seen within a period (7d, 24h, 2w) or since a date (YYYY-MM-DD)",
    "resolved_since": "resolved within a period or since a date",
    "exception": "covered by this exception id now",
}


def filter_findings(findings: QuerySet, params: Mapping[str, str]) -> QuerySet:
    """``findings`` narrowed by the explorer's filter; 400 naming each bad parameter."""
    try:
        selection = FindingFilter.parse(params)
    except FilterError as exc:
        raise BadRequest(exc.errors) from None
    return selection.apply(findings)


def label_param(text: str) -> dict[str, str]:
    """``?label=KEY=VALUE`` on the hosts list as a one-label scope; 400 if it is not that."""
    try:
        return dict([parse_label(text)])
    except ValidationError as exc:
        raise BadRequest({"label": exc.messages}) from None
