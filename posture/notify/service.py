"""Channel operations shared by the channels page and ``manage.py channels``."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from posture.models import AuditAction, AuditEntry, Channel
from posture.models.alerts import EMAIL_PREFIX

from . import messages, send


def new_channel(name: str, target: str) -> Channel:
    """An unsaved channel for an Apprise URL or ``email:…``; ValidationError if neither."""
    channel = Channel(name=name)
    target = target.strip()
    channel.set_target(target, redacted="" if target.startswith(EMAIL_PREFIX) else send.redact(target))
    return channel


def test_channel(channel: Channel, *, actor: Any) -> tuple[bool, str]:
    """Send a test message now, in this process; the outcome is recorded on the channel."""
    try:
        send.send(channel, *messages.test_message())
    except send.DeliveryError as exc:
        ok, outcome = False, str(exc)
    else:
        ok, outcome = True, "test message sent"
    with transaction.atomic():
        if ok:
            channel.record_success()
        else:
            channel.record_failure(outcome, gave_up=False)
        AuditEntry.log(actor, AuditAction.CHANNEL_TEST, channel, ok=ok, outcome=outcome)
    return ok, outcome


def describe(channel: Channel) -> dict[str, Any]:
    """A channel as ``channels list --format json`` shows it: never the secret target."""
    return {
        "name": channel.name,
        "kind": channel.kind,
        "target": channel.redacted,
        "enabled": channel.enabled,
        "failing": channel.is_failing,
        "failing_since": channel.failing_since.isoformat() if channel.failing_since else None,
        "last_success_at": channel.last_success_at.isoformat() if channel.last_success_at else None,
        "last_failure_at": channel.last_failure_at.isoformat() if channel.last_failure_at else None,
        "last_error": channel.last_error,
        "rules": [
            {
                "id": r.pk,
                "events": r.events,
                "min_severity": r.min_severity,
                "labels": r.labels,
                "rules": r.rule_ids,
                "risk_points": r.risk_points,
                "summary": r.describe(),
            }
            for r in channel.rules.all()
        ],
    }
