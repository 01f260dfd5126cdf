"""Every stored status as TextChoices. Severity and subject type are the rule core's enums
(``posture.rules``), used here as they are: one vocabulary from the rules to the pages."""

from __future__ import annotations

from django.db import models

from posture.rules import Severity, SubjectType

__all__ = ["EventKind", "ExceptionStatus", "FindingStatus", "HostStatus", "PollStatus", "Severity", "SubjectType", "severity_rank"]


# Severity as field choices, importable by path (the API schema names the set once).
SEVERITY_CHOICES = Severity.choices()


def severity_rank(field: str = "severity") -> models.Case:
    """``Severity.rank`` of ``field`` in SQL, for ordering worst first (``-rank``) or comparing."""
    return models.Case(*(models.When(**{field: s.value}, then=s.rank) for s in Severity), default=-1, output_field=models.IntegerField())


class HostStatus(models.TextChoices):
    """What a host's last poll concluded; STALE is derived (no good poll for a while), never stored."""

    NEW = "new", "Not polled yet"
    OK = "ok", "OK"
    STALE = "stale", "Stale"
    UNREACHABLE = "unreachable", "Unreachable"
    ERROR = "error", "Error"

    @property
    def icon(self) -> str:
        return {"new": "…", "ok": "✓", "stale": "⚠", "unreachable": "✕", "error": "✕"}[self.value]


class PollStatus(models.TextChoices):
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost (worker died)"


class FindingStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted"
    RESOLVED = "resolved", "Resolved"


class EventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    CHANGED = "changed", "Changed"
    RESOLVED = "resolved", "Resolved"
    REOPENED = "reopened", "Reopened"
    ACCEPTED = "accepted", "Risk accepted"
    ACCEPTANCE_EXPIRED = "acceptance_expired", "Acceptance expired"
    ACCEPTANCE_WITHDRAWN = "acceptance_withdrawn", "Exception removed"


class ExceptionStatus(models.TextChoices):
    """An exception applies while ACTIVE; EXPIRED and REMOVED ones are kept for the record."""

    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REMOVED = "removed", "Removed"
