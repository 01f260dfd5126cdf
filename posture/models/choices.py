"""Every status and severity as TextChoices; severities mirror the rule core's enum."""

from __future__ import annotations

from django.db import models

from posture.rules import Severity as RuleSeverity
from posture.rules import SubjectType as RuleSubjectType

Severity = models.TextChoices("Severity", [(s.name, (s.value, s.label)) for s in RuleSeverity])
SubjectType = models.TextChoices("SubjectType", [(s.name, (s.value, s.value.capitalize())) for s in RuleSubjectType])
SEVERITY_RANK = {s.value: s.rank for s in RuleSeverity}


class HostStatus(models.TextChoices):
    NEW = "new", "Not polled yet"
    OK = "ok", "OK"
    UNREACHABLE = "unreachable", "Unreachable"
    ERROR = "error", "Error"


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
    ACCEPTANCE_REVOKED = "acceptance_revoked", "Acceptance revoked"
