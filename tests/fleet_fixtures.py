"""Findings made the way a poll makes them (``Finding.objects.reconcile`` with hand-built
specs), for tests of the explorer, exceptions and the risk score that need no engine."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from posture.models import DockerHost, Finding, PollRun, PollStatus
from posture.rules import BY_ID, Evaluation, FindingSpec, SubjectType


def spec(rule_id: str, subject: str, *, image: str = "", project: str = "", key: str = "", exposed: bool = False, running: bool | None = True) -> FindingSpec:
    rule = BY_ID[rule_id]
    container = rule.subject is SubjectType.CONTAINER
    return FindingSpec(
        rule_id=rule_id,
        severity=rule.severity,
        subject_type=rule.subject,
        subject_key=f"{project}/{subject}" if project else subject,
        subject_name=subject,
        title=rule.title,
        cis=rule.cis,
        evidence={"why": "test"},
        remediation="fix it",
        running=running if container else None,
        key=key,
        exposed=exposed,
        image=image if container else "",
        compose_project=project if container else "",
    )


def poll_with(host: DockerHost, *specs: FindingSpec, now: datetime | None = None) -> PollRun:
    """One poll that concluded ``specs`` about ``host``: reconciled and scored."""
    now = now or timezone.now()
    run = PollRun.begin(host, "t")
    Finding.objects.reconcile(host, Evaluation(specs=list(specs)), run, now)
    host.refresh_risk(run)
    run.finish(PollStatus.OK, at=now)
    return run


def two_hosts() -> tuple[DockerHost, DockerHost]:
    """web-1 (env=prod, team=edge) and web-2 (env=prod, team=data), with a Traefik proxy that
    mounts the Docker socket, a Redis published on every interface and a privileged box."""
    one = DockerHost.objects.create(name="web-1", url="unix:///one.sock", labels={"env": "prod", "team": "edge"})
    two = DockerHost.objects.create(name="web-2", url="unix:///two.sock", labels={"env": "prod", "team": "data"})
    poll_with(
        one,
        spec("docker-socket-mounted", "proxy", image="traefik:v3.0", project="edge"),
        spec("port-sensitive-service-exposed", "cache", image="redis:7", project="shop", key="6379/tcp", exposed=True),
        spec("privileged", "builder", image="docker:dind"),
    )
    poll_with(
        two,
        spec("docker-socket-mounted", "traefik-1", image="traefik:v3.1"),
        spec("port-sensitive-service-exposed", "redis", image="redis:7", project="cache", key="6379/tcp", exposed=True),
    )
    return one, two
