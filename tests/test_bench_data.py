"""The benchmark's fleet (``tests/bench_data.py``) writes raw rows, column by column: a
model change it misses would only show in ``make bench``. Here, a small fleet must read
like a polled one — counts on the host rows that match the findings, stale hosts found
by ``stale_at`` — and the pages must render it."""

from __future__ import annotations

import pytest
from django.db.models import Count

from posture.models import DockerHost, Finding, FindingStatus, HostStatus

from .bench_data import build_fleet

pytestmark = pytest.mark.django_db


def test_a_small_fleet_reads_like_a_polled_one(client, viewer):
    built = build_fleet(hosts=60, containers=300, findings=900, events=1200, samples_per_host=3, exceptions=4)
    assert (built.hosts, built.containers, built.findings, built.events) == (60, 300, 900, 1200)
    opened = dict(Finding.objects.filter(status=FindingStatus.OPEN).values_list("host").annotate(n=Count("id")).values_list("host", "n"))
    hosts = list(DockerHost.objects.all())
    for host in hosts:
        assert host.open_total == opened.get(host.pk, 0), host.name
        assert host.stale_at == host.stale_after(), host.name
    statuses = {host.display_status for host in hosts}
    assert {HostStatus.OK, HostStatus.STALE} <= statuses

    client.force_login(viewer)
    for url in ("/", "/?status=stale", "/?status=unreachable", "/findings/", "/findings/?view=rules", f"/hosts/{hosts[0].name}/"):
        assert client.get(url).status_code == 200, url
