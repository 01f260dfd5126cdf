"""Exceptions: scoped acceptance applied now, during reconciliation and when another ends;
expiry and removal reopen with events; every change audited; the single-finding
acceptance is an exception of its own; the ``exceptions`` command."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from posture.models import AuditAction, AuditEntry, DockerHost, EventKind, ExceptionStatus, Finding, FindingStatus, RiskException
from posture.models.exceptions import common_glob, narrowest_scope

from .fleet_fixtures import poll_with, spec, two_hosts

pytestmark = pytest.mark.django_db


def later(days: int = 30):
    return timezone.now() + timedelta(days=days)


def add(actor=None, **fields) -> RiskException:
    fields.setdefault("justification", "Reviewed with the platform team, SEC-101")
    fields.setdefault("expires_at", later())
    return RiskException.objects.add(actor=actor, **fields)


def statuses(**lookup) -> set[str]:
    return set(Finding.objects.filter(**lookup).values_list("status", flat=True))


def test_creating_accepts_what_it_covers_now_with_events_audit_and_new_scores(analyst):
    one, two = two_hosts()
    before = {h.name: h.risk_score for h in DockerHost.objects.all()}
    draft = RiskException(rule_id="docker-socket-mounted", image="traefik:*")
    assert draft.preview() == (2, 2)
    exception = add(analyst, rule_id="docker-socket-mounted", image="traefik:*", owner=analyst)
    covered = Finding.objects.filter(rule_id="docker-socket-mounted")
    assert {(f.status, f.exception_id) for f in covered} == {(FindingStatus.ACCEPTED, exception.pk)}
    assert statuses(rule_id="privileged") == {FindingStatus.OPEN}
    for f in covered:
        event = f.events.get(kind=EventKind.ACCEPTED)
        assert event.detail["exception"] == exception.pk and event.actor == analyst
    entry = AuditEntry.objects.get(action=AuditAction.EXCEPTION_ADD)
    assert entry.actor == analyst and entry.detail["covered"] == 2 and entry.detail["hosts"] == 2
    after = {h.name: h.risk_score for h in DockerHost.objects.all()}
    assert all(after[name] < before[name] for name in before)
    assert RiskException.objects.with_coverage().get().covered_findings == 2


def test_a_finding_opened_later_starts_accepted_and_names_the_exception():
    one, _two = two_hosts()
    exception = add(rule_id="privileged", labels={"team": "edge"})
    run = poll_with(one, spec("privileged", "builder", image="docker:dind"), spec("privileged", "second-builder", image="docker:dind"))
    late = Finding.objects.get(subject_name="second-builder")
    assert late.status == FindingStatus.ACCEPTED and late.exception == exception
    assert [e.kind for e in late.events.all()] == [EventKind.OPENED, EventKind.ACCEPTED]
    assert late.events.get(kind=EventKind.ACCEPTED).poll == run
    # The same specs again: nothing moves.
    events = late.events.count()
    poll_with(one, spec("privileged", "builder", image="docker:dind"), spec("privileged", "second-builder", image="docker:dind"))
    assert late.events.count() == events


def test_a_returning_finding_is_covered_again():
    one, _two = two_hosts()
    add(rule_id="privileged")
    poll_with(one)  # everything resolves
    assert statuses(host=one) == {FindingStatus.RESOLVED}
    poll_with(one, spec("privileged", "builder", image="docker:dind"))
    back = Finding.objects.get(host=one, rule_id="privileged")
    assert back.status == FindingStatus.ACCEPTED
    assert [e.kind for e in back.events.all()][-2:] == [EventKind.REOPENED, EventKind.ACCEPTED]


def test_expiry_reopens_with_events_and_an_audit_entry_and_another_exception_takes_over():
    two_hosts()
    short = add(rule_id="port-sensitive-service-exposed", expires_at=later(2))
    long = add(rule_id="port-sensitive-service-exposed", image="redis:*", labels={"team": "data"}, expires_at=later(60))
    assert set(Finding.objects.filter(rule_id="port-sensitive-service-exposed").values_list("exception", flat=True)) == {short.pk}
    reopened = RiskException.objects.expire_due(later(3))
    assert reopened == 1  # web-2's Redis went straight to the longer exception
    web1, web2 = (Finding.objects.get(rule_id="port-sensitive-service-exposed", host__name=n) for n in ("web-1", "web-2"))
    assert web1.status == FindingStatus.OPEN and web1.exception is None
    assert [e.kind for e in web1.events.all()][-1] == EventKind.ACCEPTANCE_EXPIRED
    assert web2.status == FindingStatus.ACCEPTED and web2.exception == long
    assert [e.kind for e in web2.events.all()][-2:] == [EventKind.ACCEPTANCE_EXPIRED, EventKind.ACCEPTED]
    short.refresh_from_db()
    assert short.status == ExceptionStatus.EXPIRED and short.ended_at is not None
    assert AuditEntry.objects.filter(action=AuditAction.EXCEPTION_EXPIRE, target=str(short)).count() == 1
    assert RiskException.objects.expire_due(later(3)) == 0


def test_removing_reopens_at_once_and_is_audited(analyst):
    one, _two = two_hosts()
    exception = add(analyst, rule_id="privileged")
    covered = DockerHost.objects.get(pk=one.pk).risk_score
    assert exception.remove(actor=analyst) == 1
    assert statuses(rule_id="privileged") == {FindingStatus.OPEN}
    assert Finding.objects.get(rule_id="privileged").events.last().kind == EventKind.ACCEPTANCE_WITHDRAWN
    assert DockerHost.objects.get(pk=one.pk).risk_score > covered
    assert AuditEntry.objects.get(action=AuditAction.EXCEPTION_REMOVE).actor == analyst
    assert exception.remove(actor=analyst) == 0  # already ended: nothing happens twice


def test_editing_the_terms_is_audited_and_moves_the_acceptances(analyst, admin):
    two_hosts()
    exception = add(analyst, rule_id="privileged", owner=analyst)
    until = later(90)
    assert exception.edit(actor=admin, justification="Still a lab builder, SEC-102", owner=admin, expires_at=until) == ["justification", "owner", "expires_at"]
    assert Finding.objects.get(rule_id="privileged").accepted_until == until
    entry = AuditEntry.objects.get(action=AuditAction.EXCEPTION_EDIT)
    assert entry.actor == admin and entry.detail["fields"] == ["justification", "owner", "expires_at"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "rule_id"),
        ({"rule_id": "privileged", "max_severity": "high"}, "rule_id"),
        ({"rule_id": "nope"}, "rule_id"),
        ({"rule_id": "privileged", "expires_at": "past"}, "expires_at"),
        ({"rule_id": "privileged", "expires_at": "two years"}, "expires_at"),
        ({"rule_id": "privileged", "justification": "ok"}, "justification"),
        ({"rule_id": "privileged", "labels": {"bad key!": "x"}}, "labels"),
    ],
)
def test_bad_exceptions_are_refused_and_change_nothing(fields, field):
    two_hosts()
    when = {"past": timezone.now() - timedelta(days=1), "two years": later(800)}
    if fields.get("expires_at") in when:
        fields["expires_at"] = when[fields["expires_at"]]
    with pytest.raises(ValidationError) as caught:
        add(**fields)
    assert field in caught.value.message_dict
    assert not RiskException.objects.exists() and statuses() == {FindingStatus.OPEN}


def test_a_severity_exception_covers_that_severity_and_below():
    two_hosts()
    add(max_severity="high", labels={"team": "edge"})
    rows = set(Finding.objects.filter(host__name="web-1").values_list("rule_id", "status"))
    assert ("privileged", FindingStatus.OPEN) in rows  # critical: above the ceiling
    assert ("docker-socket-mounted", FindingStatus.OPEN) in rows or ("docker-socket-mounted", FindingStatus.ACCEPTED) in rows
    assert statuses(host__name="web-2") == {FindingStatus.OPEN}


def test_the_single_finding_acceptance_is_an_exception_scoped_to_that_finding(analyst):
    two_hosts()
    finding = Finding.objects.get(host__name="web-1", rule_id="port-sensitive-service-exposed")
    exception = finding.accept(by=analyst, until=later(10), justification="Behind the VPN, SEC-7")
    assert exception.finding == finding and exception.rule_id == finding.rule_id and exception.host == finding.host
    assert statuses(rule_id="port-sensitive-service-exposed") == {FindingStatus.ACCEPTED, FindingStatus.OPEN}
    assert AuditEntry.objects.get().action == AuditAction.FINDING_ACCEPT
    assert exception.describe().startswith("port-sensitive-service-exposed: finding #")


def test_the_narrowest_common_scope_of_a_selection():
    two_hosts()
    socket = Finding.objects.filter(rule_id="docker-socket-mounted")
    assert narrowest_scope(socket) == {"rule": "docker-socket-mounted", "label": "env=prod", "image": "traefik:v3.*"}
    redis = Finding.objects.filter(rule_id="port-sensitive-service-exposed", host__name="web-1")
    assert narrowest_scope(redis) == {"rule": "port-sensitive-service-exposed", "host": "web-1", "image": "redis:7", "name": "cache", "project": "shop"}
    everything = Finding.objects.all()
    assert narrowest_scope(everything) == {"up_to": "critical", "label": "env=prod"}
    assert narrowest_scope(Finding.objects.none()) == {}
    assert common_glob(["edge-1", "edge-2"]) == "edge-*" and common_glob(["a", "b"]) == ""


# --- the command ------------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_exceptions_add_list_remove(analyst):
    two_hosts()
    day = later(30).date().isoformat()
    out = run("exceptions", "add", "--rule", "docker-socket-mounted", "--label", "env=prod", "--image", "traefik:*",
              "--justification", "Traefik needs the socket, SEC-5", "--expires", day, "--owner", analyst.username)  # fmt: skip
    exception_id = int(out.split()[0])
    assert "covers 2 open findings on 2 hosts" in out
    (listed,) = json.loads(run("exceptions", "list", "--format", "json"))
    assert {"id", "rule", "scope", "justification", "owner", "expires", "covered"} <= set(listed)
    assert (listed["id"], listed["rule"], listed["owner"], listed["covered"]) == (exception_id, "docker-socket-mounted", analyst.username, 2)
    assert listed["scope"]["labels"] == {"env": "prod"} and listed["scope"]["image"] == "traefik:*"
    assert listed["expires"].startswith(day)
    assert "2 findings reopened" in run("exceptions", "remove", str(exception_id))
    assert json.loads(run("exceptions", "list", "--format", "json")) == []
    assert [e["status"] for e in json.loads(run("exceptions", "list", "--all", "--format", "json"))] == ["removed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rule", "privileged", "--expires", "2020-01-01"], "expires_at: Pick a day after today"),
        (["--rule", "privileged", "--expires", "someday"], "not a date"),
        (["--rule", "privileged", "--host", "ghost"], "no host named ghost"),
        (["--rule", "privileged", "--owner", "nobody"], "no user named nobody"),
        (["--rule", "privileged", "--label", "novalue"], "KEY=VALUE"),
        (["--rule", "nope"], "No rule named nope"),
    ],
)
def test_exceptions_add_rejects_bad_input_clearly(args, message):
    two_hosts()
    args = [*args, "--justification", "Reviewed, SEC-9"] + ([] if "--expires" in args else ["--expires", later(10).date().isoformat()])
    with pytest.raises(CommandError, match=message):
        run("exceptions", "add", *args)
    assert not RiskException.objects.exists()


def test_exceptions_remove_unknown():
    with pytest.raises(CommandError, match="no exception 42"):
        run("exceptions", "remove", "42")
