"""Transitions worth an alert, derived from what polls and scans wrote.

Finding transitions come from the append-only ``FindingEvent`` rows of one poll; a host
going down from its poll runs; a risk rise from its risk samples; staleness and expiring
exceptions (scoped, or one finding's acceptance) from a periodic scan. Keys name the row that records the transition, so the
same transition derived twice has the same key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.urls import reverse

from posture.models import AlertEvent, DockerHost, EventKind, Finding, FindingEvent, PollRun, PollStatus, RiskException, RiskSample, Transition
from posture.rules import BY_ID

# Finding event kinds an alert rule can ask for, by the event kind that records them.
FINDING_EVENTS = {EventKind.OPENED: AlertEvent.OPENED, EventKind.REOPENED: AlertEvent.REOPENED}


def host_path(host: DockerHost) -> str:
    return reverse("host", kwargs={"name": host.name})


def host_transition(key: str, event: str, host: DockerHost, title: str, **extra: object) -> Transition:
    """A host-level transition (down, stale, risk): rules' severity and rule scopes do not apply."""
    return Transition(key=key, event=event, host_id=host.pk, host_name=host.name, host_labels=dict(host.labels), title=title, path=host_path(host), **extra)


def finding_transition(key: str, event: str, finding: Finding, host: DockerHost, **extra: object) -> Transition:
    return Transition(
        key=key,
        event=event,
        host_id=host.pk,
        host_name=host.name,
        host_labels=dict(host.labels),
        title=finding.title,
        path=reverse("finding", kwargs={"host": host.name, "pk": finding.pk}),
        severity=finding.severity,
        rule_id=finding.rule_id,
        subject=finding.subject_name,
        **extra,
    )


def for_poll(run: PollRun) -> list[Transition]:
    """Everything alertable that this poll did, in a fixed number of queries."""
    host = run.host
    found: list[Transition] = []
    events = FindingEvent.objects.filter(poll=run, kind__in=list(FINDING_EVENTS)).select_related("finding").order_by("pk")
    found += [finding_transition(f"finding-event:{e.pk}", FINDING_EVENTS[e.kind], e.finding, host) for e in events]
    if run.status == PollStatus.FAILED and _went_down(run):
        found.append(host_transition(f"host-down:{run.pk}", AlertEvent.UNREACHABLE, host, f"{host.name} cannot be polled: {run.error}"))
    rise = _risk_rise(run)
    if rise is not None:
        sample, delta = rise
        title = f"risk of {host.name} rose by {delta} to {sample.score}"
        found.append(host_transition(f"risk:{sample.pk}", AlertEvent.RISK, host, title, risk_delta=delta, detail={"score": sample.score}))
    return found


def _went_down(run: PollRun) -> bool:
    """A failed poll is a transition when the host's previous finished poll succeeded (or there was none)."""
    previous = (
        PollRun.objects.filter(host_id=run.host_id, pk__lt=run.pk, status__in=[PollStatus.OK, PollStatus.FAILED])
        .order_by("-pk")
        .values_list("status", flat=True)
        .first()
    )
    return previous != PollStatus.FAILED


def _risk_rise(run: PollRun) -> tuple[RiskSample, int] | None:
    """This poll's risk sample and how far it rose above the one before (0 before any)."""
    sample = RiskSample.objects.filter(poll=run).order_by("-pk").first()
    if sample is None:
        return None
    before = RiskSample.objects.filter(host_id=run.host_id, pk__lt=sample.pk).order_by("-pk").values_list("score", flat=True).first() or 0
    delta = sample.score - before
    return (sample, delta) if delta > 0 else None


def stale(now: datetime) -> list[Transition]:
    """Enabled hosts with no good poll for a while; one transition per stale spell (keyed by its start)."""
    hosts = DockerHost.objects.filter(DockerHost.objects.stale_q(now), enabled=True).only(
        "pk", "name", "labels", "last_success_at", "created_at", "poll_interval"
    )
    found = []
    for host in hosts:
        since = host.last_success_at or host.created_at
        title = f"{host.name} is stale: no successful poll since {since:%Y-%m-%d %H:%M} UTC"
        found.append(host_transition(f"host-stale:{host.pk}:{since.isoformat()}", AlertEvent.UNREACHABLE, host, title))
    return found


# --- expiring exceptions ---------------------------------------------------------------


def expiring(now: datetime) -> list[Transition]:
    """Active exceptions (scoped, or a single finding's acceptance) that end within
    ``NOTIFY_EXPIRING_DAYS``, keyed by the exception and its end (a renewed one is
    announced again).

    One transition per exception, however many findings it covers; a scope by host or by
    labels is what alert rules' label scopes are matched against, and the rule (or the
    severity ceiling) what their severity and rule scopes are.
    """
    until = now + timedelta(days=settings.NOTIFY_EXPIRING_DAYS)
    due = RiskException.objects.active(now).filter(expires_at__lte=until).select_related("host").with_coverage()
    return [_expiring(exception) for exception in due]


def _expiring(exception: RiskException) -> Transition:
    rule = BY_ID.get(exception.rule_id)
    severity = rule.severity.value if rule else exception.max_severity
    host = exception.host
    return Transition(
        key=f"expiring:exception:{exception.pk}:{exception.expires_at.isoformat()}",
        event=AlertEvent.EXPIRING,
        host_id=host.pk if host else 0,
        host_name=host.name if host else "every matching host",
        host_labels=dict(host.labels) | exception.labels if host else dict(exception.labels),
        title=f"exception #{exception.pk} ({exception.describe()}) ends {exception.expires_at:%Y-%m-%d}; "
        f"it covers {exception.covered_findings} accepted finding(s), which reopen then",
        path=reverse("exception", kwargs={"pk": exception.pk}),
        severity=severity,
        rule_id=exception.rule_id,
        detail={"until": exception.expires_at.isoformat()},
    )
