"""The watcher's decisions without an engine: events, debounce, backoff, and sharing
hosts out by leases in the database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from posture.models import DockerHost, HostWatch, PollRun, Watcher
from posture.models.watch import fair_share
from posture.watch.events import FILTERS, MAX_EVENT_BYTES, BadEvent, Burst, Debounce, Event, parse_event, since_param
from posture.watch.watcher import BACKOFF_MAX, EventWatcher, backoff

LEASE = timedelta(seconds=40)


def line(**fields: object) -> bytes:
    event = {"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "web"}}, "timeNano": 1_700_000_000_123_456_789}
    return json.dumps(event | fields).encode() + b"\n"


# --- events ---------------------------------------------------------------------


def test_an_engine_event_is_read_with_its_time_and_subject():
    event = parse_event(line())
    assert event == Event(type="container", action="start", time_nano=1_700_000_000_123_456_789, subject="web")
    assert event.relevant


def test_events_that_cannot_change_exposure_are_not_relevant():
    assert not parse_event(line(Action="exec_start: sh")).relevant
    assert not parse_event(line(Type="image", Action="pull")).relevant
    assert parse_event(line(Type="network", Action="disconnect")).relevant
    assert parse_event(line(Type="daemon", Action="reload")).relevant


def test_the_engine_is_asked_for_exactly_the_relevant_events():
    filters = json.loads(FILTERS)
    assert filters["type"] == ["container", "daemon", "network"]
    assert {"create", "start", "die", "destroy", "rename", "update", "connect", "disconnect", "remove", "reload"} == set(filters["event"])


@pytest.mark.parametrize(
    "bad",
    [b"not json\n", b"[1, 2]\n", b'{"Type": "container"}\n', line(timeNano="soon"), line(timeNano=True), b"[" * 100_000 + b"\n"],
)
def test_anything_that_is_not_an_event_is_refused(bad):
    with pytest.raises(BadEvent):
        parse_event(bad)


def test_an_oversized_line_is_refused_before_parsing():
    with pytest.raises(BadEvent, match="KiB"):
        parse_event(line(Actor={"ID": "x", "Attributes": {"name": "a" * MAX_EVENT_BYTES}}))


def test_old_engines_give_seconds_only():
    raw = json.dumps({"Type": "container", "Action": "die", "time": 1_700_000_000}).encode()
    assert parse_event(raw).time_nano == 1_700_000_000 * 10**9


def test_since_asks_for_events_strictly_after_the_last_one_seen():
    assert since_param(1_700_000_000_123_456_789) == "1700000000.123456790"
    assert since_param(1_699_999_999_999_999_999) == "1700000000.000000000"


# --- debounce ---------------------------------------------------------------------


def ev(nano: int, subject: str = "c") -> Event:
    return Event(type="container", action="create", time_nano=nano, subject=subject)


def test_a_burst_is_one_poll_after_a_quiet_window():
    d = Debounce(quiet=1.0, max_delay=5.0)
    due = [d.add(ev(i), now=100 + i * 0.1) for i in range(1, 21)]  # compose up: 20 events in 2 s
    assert due[-1] == pytest.approx(103.0)  # one second after the last
    burst = d.take()
    assert burst.events == 20 and burst.first_nano == 1 and burst.last_nano == 20
    assert d.take() is None


def test_an_engine_that_never_goes_quiet_is_still_polled_at_the_maximum_delay():
    d = Debounce(quiet=1.0, max_delay=5.0)
    for i in range(100):
        due = d.add(ev(i + 1), now=100 + i * 0.5)
    assert due == pytest.approx(105.0)


def test_a_reconnection_asks_for_a_poll_without_moving_the_resume_point():
    d = Debounce(quiet=1.0, max_delay=5.0)
    d.add(ev(7), now=1)
    d.add(Event(type="daemon", action="reconnect", time_nano=0), now=2)
    burst = d.take()
    assert burst.events == 2 and burst.last_nano == 7


def test_a_burst_put_back_is_merged_and_held():
    d = Debounce(quiet=1.0, max_delay=5.0)
    d.add(ev(1, "a"), now=10)
    first = d.take()
    d.add(ev(2, "b"), now=11)
    d.put_back(first, hold_until=20)
    assert d.due_at() == 20
    merged = d.take()
    assert merged.events == 2 and merged.first_nano == 1 and merged.last_nano == 2 and merged.subjects == {"a", "b"}


def test_backoff_doubles_to_a_ceiling_with_jitter():
    for failures, ceiling in [(0, 1), (1, 2), (3, 8), (10, BACKOFF_MAX)]:
        for _ in range(20):
            assert ceiling / 2 <= backoff(failures) <= ceiling


# --- leases ---------------------------------------------------------------------


@pytest.fixture
def hosts(db):
    return [DockerHost.objects.create(name=f"h{i}", url=f"unix:///tmp/h{i}.sock") for i in range(5)]


def held(name: str) -> list[int]:
    return list(HostWatch.objects.held_by(name).order_by("host_id").values_list("host_id", flat=True))


def test_every_enabled_host_gets_a_row_to_claim(hosts):
    DockerHost.objects.filter(pk=hosts[0].pk).update(enabled=False)
    assert HostWatch.objects.ensure_rows() == 4
    assert HostWatch.objects.ensure_rows() == 0


def test_claims_take_free_leases_only(hosts):
    now = timezone.now()
    HostWatch.objects.ensure_rows()
    assert HostWatch.objects.claim("a", 3, now, now + LEASE) == {h.pk: False for h in hosts[:3]}
    assert len(HostWatch.objects.claim("b", 5, now, now + LEASE)) == 2
    assert held("a") == [h.pk for h in hosts[:3]] and held("b") == [h.pk for h in hosts[3:]]
    assert HostWatch.objects.claim("c", 5, now, now + LEASE) == {}


def test_an_expired_lease_goes_to_whoever_claims_it_and_says_so(hosts):
    now = timezone.now()
    HostWatch.objects.ensure_rows()
    HostWatch.objects.claim("dead", 3, now - 2 * LEASE, now - LEASE)  # its lease ran out
    HostWatch.objects.filter(host=hosts[3]).update(watcher="stopped", lease_until=now + LEASE)
    HostWatch.objects.release("stopped")  # given back cleanly
    taken = HostWatch.objects.claim("alive", 5, now, now + LEASE)
    assert taken == {hosts[0].pk: True, hosts[1].pk: True, hosts[2].pk: True, hosts[3].pk: False, hosts[4].pk: False}
    assert HostWatch.objects.renew("dead", now + LEASE) == 0


def test_a_disabled_host_is_not_claimed(hosts):
    now = timezone.now()
    HostWatch.objects.ensure_rows()
    DockerHost.objects.filter(pk=hosts[0].pk).update(enabled=False)
    assert len(HostWatch.objects.claim("a", 5, now, now + LEASE)) == 4


def test_release_gives_back_only_our_own(hosts):
    now = timezone.now()
    HostWatch.objects.ensure_rows()
    HostWatch.objects.claim("a", 2, now, now + LEASE)
    HostWatch.objects.claim("b", 3, now, now + LEASE)
    assert HostWatch.objects.release("a", [hosts[0].pk, hosts[4].pk]) == 1
    assert held("a") == [hosts[1].pk]
    assert HostWatch.objects.free(now).count() == 1


def test_watchers_count_each_other_and_forget_the_dead(db):
    now = timezone.now()
    assert Watcher.heartbeat("a", now, LEASE, hosts=0) == 1
    assert Watcher.heartbeat("b", now, LEASE, hosts=0) == 2
    assert Watcher.heartbeat("a", now + LEASE + timedelta(seconds=1), LEASE, hosts=0) == 1  # b fell silent
    assert list(Watcher.objects.values_list("name", flat=True)) == ["a"]


def test_a_fair_share_covers_every_host_within_the_limit():
    assert fair_share(1000, 1, 2000) == 1000
    assert fair_share(1000, 3, 2000) == 334
    assert fair_share(5000, 1, 2000) == 2000
    assert fair_share(0, 2, 2000) == 0


def test_the_host_page_says_whether_the_host_is_watched_live(client, admin, hosts):
    client.force_login(admin)
    host = hosts[0]
    assert "not watched" in client.get(f"/hosts/{host.name}/").text
    now = timezone.now()
    HostWatch.objects.create(host=host, watcher="w", lease_until=now + LEASE, connected_at=now, last_event_at=now - timedelta(minutes=3))
    page = client.get(f"/hosts/{host.name}/").text
    assert "watched</span> since" in page and "last event 3\xa0minutes ago" in page
    HostWatch.objects.filter(host=host).update(connected_at=None, error="cannot reach unix:///tmp/h0.sock: No such file or directory")
    assert "the watcher cannot connect</span>: cannot reach" in client.get(f"/hosts/{host.name}/").text
    HostWatch.objects.filter(host=host).update(lease_until=now - LEASE)  # its watcher died
    assert "not watched" in client.get(f"/hosts/{host.name}/").text


# --- the watcher's own decisions, on the database -------------------------------------


def make_watcher(name: str, max_hosts: int = 2000) -> EventWatcher:
    return EventWatcher(name, lease=40, quiet=1, max_delay=5, max_hosts=max_hosts)


def test_watchers_share_the_hosts_out_and_a_newcomer_gets_its_share(hosts):
    a, b = make_watcher("a"), make_watcher("b")
    assert sorted(a._claim()) == [h.pk for h in hosts]  # alone: everything
    assert b._claim() == {}  # nothing free yet, but b is now counted
    assert len(a._claim()) == 3  # a gives back above its share of ceil(5 / 2)
    assert len(b._claim()) == 2
    assert sorted([*a._claim(), *b._claim()]) == [h.pk for h in hosts]


def test_a_watcher_holds_no_more_than_its_limit_and_says_what_goes_unwatched(hosts, caplog):
    assert len(make_watcher("small", max_hosts=2)._claim()) == 2
    assert "3 host(s) are not watched: start another watcher" in caplog.text


def test_a_disabled_host_is_let_go(hosts):
    a = make_watcher("a")
    a._claim()
    DockerHost.objects.filter(pk=hosts[0].pk).update(enabled=False)
    assert hosts[0].pk not in a._claim()
    assert HostWatch.objects.get(host=hosts[0]).watcher == ""


def test_a_burst_waits_while_the_host_is_being_polled(hosts, monkeypatch):
    sent = []
    monkeypatch.setattr("posture.watch.watcher.poll_host.apply_async", lambda args, queue: sent.append((args[0], queue)))
    a = make_watcher("a")
    configs = a._claim()
    busy, free = hosts[0], hosts[1]
    PollRun.begin(busy, "a-running-poll")  # a poll of it is running: its run holds the lease
    burst = Burst(events=3, first_nano=10, last_nano=30)
    rows = [HostWatch(host_id=h.pk, since_nano=5) for h in (busy, free)]
    done, waiting = a._flush({h.pk: (configs[h.pk][0], burst) for h in (busy, free)}, rows)
    assert (done, waiting) == ({free.pk}, {busy.pk})
    assert sent == [(free.pk, "celery")]
    # Only the sent burst moves where the stream resumes.
    assert HostWatch.objects.get(host=free).since_nano == 30
    assert HostWatch.objects.get(host=busy).since_nano == 5


def test_state_is_not_written_for_a_host_another_watcher_took(hosts, monkeypatch):
    monkeypatch.setattr("posture.watch.watcher.poll_host.apply_async", lambda args, queue: None)
    a = make_watcher("a")
    a._claim()
    HostWatch.objects.filter(host=hosts[0]).update(watcher="b", since_nano=99)
    a._flush({}, [HostWatch(host_id=hosts[0].pk, since_nano=1, error="mine")])
    row = HostWatch.objects.get(host=hosts[0])
    assert (row.watcher, row.since_nano, row.error) == ("b", 99, "")
