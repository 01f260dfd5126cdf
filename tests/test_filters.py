"""One filter for the explorer, the command, the exports and exception scopes: validated
input, safe globs, and SQL and Python that agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from posture.models import DockerHost, FilterError, Finding, FindingFilter, FindingStatus
from posture.models.filters import glob_regex, parse_since, sql_pattern

from .fleet_fixtures import poll_with, spec, two_hosts

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"severity": "urgent"}, "severity", "one of critical"),
        ({"status": "closed"}, "status", "one of open"),
        ({"rule": "no-such-rule"}, "rule", "no rule named no-such-rule"),
        ({"host": "ghost"}, "host", "no host named ghost"),
        ({"label": "novalue"}, "label", "KEY=VALUE"),
        ({"label": "bad key!=x"}, "label", "label key"),
        ({"since": "last week"}, "since", "7d, 24h or 2w"),
        ({"exception": "abc"}, "exception", "a number"),
        ({"image": "x" * 301}, "image", "at most 300"),
    ],
)
def test_bad_input_is_named_field_by_field(params, field, message):
    with pytest.raises(FilterError) as caught:
        FindingFilter.parse(params)
    assert message in caught.value.errors[field]


def test_periods_and_dates():
    now = datetime(2026, 5, 10, 12, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-05-01", now) == datetime(2026, 5, 1, tzinfo=UTC)


def test_globs_escape_sql_wildcards():
    assert sql_pattern("100%_a*?", "postgresql") == "100\\%\\_a%_"
    assert sql_pattern("a[b]*", "sqlite") == "a[[]b]*"
    assert glob_regex("redis:*").match("redis:7") and not glob_regex("redis:*").match("xredis:7")
    assert glob_regex("web-?").match("web-1") and not glob_regex("web-?").match("web-10")


def test_a_percent_or_underscore_in_a_glob_is_literal():
    host = DockerHost.objects.create(name="h", url="unix:///h.sock")
    poll_with(host, spec("privileged", "a_b", image="x%y:1"), spec("privileged", "axb", image="xzy:1"))
    names = lambda **p: sorted(FindingFilter.parse(p).apply(Finding.objects.all()).values_list("subject_name", flat=True))  # noqa: E731
    assert names(name="a_*") == ["a_b"]
    assert names(image="x%y:*") == ["a_b"]
    assert names(image="x?y:*") == ["a_b", "axb"]


def test_the_query_string_round_trips_and_keeps_periods_as_typed():
    now = timezone.now()
    selection = FindingFilter.parse({"rule": ["privileged", "host-network"], "label": "env=prod, team=edge", "since": "7d", "q": "redis"}, now=now)
    params: dict[str, list[str]] = {}
    for key, value in selection.params():
        params.setdefault(key, []).append(value)
    assert FindingFilter.parse(params, now=now) == selection
    assert ("since", "7d") in selection.params() and selection.rules == ("privileged", "host-network")
    assert dict(selection.labels) == {"env": "prod", "team": "edge"}


FILTERS = [
    {},
    {"status": "all"},
    {"rule": "docker-socket-mounted"},
    {"severity": "high"},
    {"up_to": "high"},
    {"host": "web-2"},
    {"label": "team=edge"},
    {"label": "env=prod"},
    {"image": "traefik:*"},
    {"image": "redis:7"},
    {"image": "*:v3.?"},
    {"project": "shop"},
    {"name": "traefik-*"},
    {"name": "c?che"},
    {"q": "REDIS"},
    {"q": "socket"},
    {"cis": "5.32"},
    {"since": "1d"},
    {"status": "resolved", "resolved_since": "1d"},
    {"rule": "port-sensitive-service-exposed", "label": "env=prod", "image": "redis:*"},
]


@pytest.mark.parametrize("params", FILTERS, ids=[str(p) for p in FILTERS])
def test_sql_and_python_select_the_same_findings(params):
    one, two = two_hosts()
    poll_with(two, spec("docker-socket-mounted", "traefik-1", image="traefik:v3.1"))  # the Redis one resolves
    selection = FindingFilter.parse(params)
    in_sql = set(selection.apply(Finding.objects.all()).values_list("pk", flat=True))
    in_python = {f.pk for f in Finding.objects.select_related("host") if selection.matches(f, f.host)}
    assert in_sql == in_python


def test_container_scopes_leave_out_network_and_daemon_findings():
    host = DockerHost.objects.create(name="h", url="unix:///h.sock")
    poll_with(host, spec("privileged", "box", image="busybox:1"), spec("insecure-registries", "h"))
    assert FindingFilter.parse({"image": "*"}).apply(Finding.objects.all()).count() == 1
    assert FindingFilter.parse({}).apply(Finding.objects.all()).count() == 2


def test_new_this_week():
    host = DockerHost.objects.create(name="h", url="unix:///h.sock")
    old = timezone.now() - timedelta(days=30)
    poll_with(host, spec("privileged", "old"), now=old)
    poll_with(host, spec("privileged", "old"), spec("privileged", "new"))
    assert list(FindingFilter.parse({"since": "7d"}).apply(Finding.objects.all()).values_list("subject_name", flat=True)) == ["new"]
    assert Finding.objects.filter(status=FindingStatus.OPEN).count() == 2
