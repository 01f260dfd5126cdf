"""Alerts: a real engine, a real Celery worker and a real HTTP listener as a generic JSON
webhook. One message per poll per channel, never twice; a dead listener is retried with
backoff, then the channel is marked failing, and polls go on regardless."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from posture.models import (
    AlertEvent,
    AlertRule,
    AuditAction,
    AuditEntry,
    Channel,
    DockerHost,
    Finding,
    Notification,
    NotificationStatus,
    PollRun,
    PollStatus,
    Transition,
)
from posture.notify import messages, service, transitions
from posture.polling import poll
from posture.tasks import notify_poll, notify_scan, poll_host

from .waiting import wait_for
from .webhook import Webhook

FOUR = {"capabilities-added", "host-ipc", "host-network", "host-pid"}


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


def add_channel(name: str, url: str, *args: str) -> Channel:
    call_command("channels", "add", name, url, *args)
    return Channel.objects.get(name=name)


def four_finding_container(engine) -> None:
    engine.container("edge", network_mode="host", pid_mode="host", ipc_mode="host", cap_add=["NET_ADMIN"])


def polls_ok(host: DockerHost) -> int:
    return PollRun.objects.filter(host=host, status=PollStatus.OK).count()


@pytest.mark.slow
def test_one_container_with_four_findings_makes_exactly_one_message_naming_them(engine, celery_worker, webhook, settings):
    settings.POSTURE_BASE_URL = "https://posture.example.test"
    host = DockerHost.objects.create(name="web-1", url=engine.url, labels={"env": "prod"})
    poll(host)  # the engine's own (daemon) findings, before anyone listens
    add_channel("ops", webhook.url(), "--label", "env=prod", "--events", "opened,reopened,unreachable")
    four_finding_container(engine)

    poll_host.delay(host.pk)
    wait_for(lambda: webhook.received, timeout=60, what="the webhook to be called")
    (message,) = webhook.received
    assert message["path"] == "/hook"
    assert message["title"] == "Posture: 4 findings opened on web-1"
    opened = Finding.objects.filter(host=host, rule_id__in=FOUR)
    assert opened.count() == 4
    for finding in opened:
        assert finding.title in message["message"]
        assert f"https://posture.example.test/hosts/web-1/findings/{finding.pk}/" in message["message"]
    note = Notification.objects.get()
    wait_for(lambda: Notification.objects.get().status == NotificationStatus.SENT, what="the notification to be marked sent")

    # The same poll notified again (a duplicate delivery, a retry) and the same state
    # polled again: nothing new to say.
    run = PollRun.objects.filter(host=host).first()
    notify_poll.delay(run.pk)
    poll_host.delay(host.pk)
    wait_for(lambda: polls_ok(host) == 3, timeout=60, what="the second poll")
    notify_poll.delay(run.pk)
    # A marker poll of another channel's scope proves the queue has drained past them.
    marker = add_channel("marker", webhook.url("/marker"), "--events", "unreachable")
    down = DockerHost.objects.create(name="gone", url="unix:///nonexistent/docker.sock")
    poll_host.delay(down.pk)
    wait_for(lambda: any(m["path"] == "/marker" for m in webhook.received), timeout=60, what="the marker message")
    assert [m["path"] for m in webhook.received].count("/hook") == 1
    assert Notification.objects.filter(channel__name="ops").count() == 1
    assert note.pk == Notification.objects.get(channel__name="ops").pk
    assert marker.notifications.count() == 1


@pytest.mark.slow
def test_a_dead_listener_is_retried_then_the_channel_is_failing_and_polls_go_on(engine, celery_worker, webhook, settings):
    settings.NOTIFY_MAX_RETRIES = 2
    settings.NOTIFY_RETRY_BACKOFF = 0.2
    host = DockerHost.objects.create(name="web-2", url=engine.url)
    poll(host)
    channel = add_channel("ops", webhook.url())
    webhook.stop()
    four_finding_container(engine)

    poll_host.delay(host.pk)
    wait_for(lambda: Notification.objects.filter(status=NotificationStatus.FAILED).exists(), timeout=60, what="the notification to give up")
    note = Notification.objects.get()
    assert note.attempts == 3  # the first try and two retries
    assert "127.0.0.1" in note.last_error or "onnection" in note.last_error
    channel.refresh_from_db()
    assert channel.is_failing and channel.last_failure_at and channel.last_error
    # Polls were not held up and go on while the channel fails.
    assert PollRun.objects.filter(host=host).first().status == PollStatus.OK
    poll_host.delay(host.pk)
    wait_for(lambda: polls_ok(host) == 3, timeout=60, what="the next poll")

    listing = json.loads(call(["channels", "list", "--format", "json"]))
    assert listing[0]["failing"] is True and listing[0]["last_error"]


def call(args: list[str]) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- deriving and matching transitions (database only) ----------------------------------


def transition(**fields: object) -> Transition:
    base = {"key": "k", "event": AlertEvent.OPENED, "host_id": 1, "host_name": "h", "host_labels": {"env": "prod"}, "title": "t", "path": "/"}
    return Transition(**(base | fields))


@pytest.mark.django_db
def test_alert_rules_scope_by_event_label_severity_rule_and_risk_points():
    rule = AlertRule(events=["opened", "risk"], min_severity="high", labels={"env": "prod"}, rule_ids=["host-network"], risk_points=15)
    assert rule.matches(transition(severity="critical", rule_id="host-network"))
    assert not rule.matches(transition(severity="medium", rule_id="host-network"))
    assert not rule.matches(transition(severity="high", rule_id="host-pid"))
    assert not rule.matches(transition(severity="high", rule_id="host-network", host_labels={"env": "dev"}))
    assert not rule.matches(transition(event="reopened", severity="high", rule_id="host-network"))
    assert rule.matches(transition(event="risk", risk_delta=15))
    assert not rule.matches(transition(event="risk", risk_delta=14))


@pytest.mark.django_db
def test_a_host_going_down_is_one_transition_not_one_per_failed_poll(tmp_path):
    host = DockerHost.objects.create(name="down", url=f"unix://{tmp_path}/absent.sock")
    first, second = poll(host), poll(host)
    assert [t.event for t in transitions.for_poll(first)] == [AlertEvent.UNREACHABLE]
    assert transitions.for_poll(second) == []


@pytest.mark.django_db
def test_stale_hosts_and_expiring_acceptances_are_announced_once_per_spell(engine, make_host, webhook, analyst):
    host = make_host("quiet", engine)
    poll(host)
    add_channel("ops", webhook.url(), "--events", "unreachable,expiring")
    finding = Finding.objects.filter(host=host).exclude(severity="info").first()
    finding.accept(by=analyst, until=timezone.now() + timedelta(days=3), justification="waiting for the vendor fix")
    host.refresh_from_db()
    host.last_success_at = timezone.now() - timedelta(days=1)  # saved, so stale_at follows
    host.save(update_fields=["last_success_at"])
    assert notify_scan() == 1
    note = Notification.objects.get()
    assert {t["event"] for t in note.transitions} == {"unreachable", "expiring"}
    assert "is stale" in messages.body(note.transitions) and "until" in messages.body(note.transitions)
    assert notify_scan() == 0  # the same stale spell, the same acceptance: nothing new


# --- the command line and the secrets ----------------------------------------------------


@pytest.mark.django_db
def test_channels_command_adds_lists_tests_and_removes_with_secrets_redacted(webhook):
    out = call(["channels", "add", "chat", f"json://bot:s3cret-token@127.0.0.1:{webhook.port}/hook", "--min-severity", "high", "--label", "env=prod"])
    assert "s3cret-token" not in out
    channel = Channel.objects.get(name="chat")
    assert "s3cret-token" not in channel.redacted and "****" in channel.redacted
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT target FROM posture_channel")
        (stored,) = cursor.fetchone()
    assert "s3cret-token" not in stored  # encrypted at rest
    listing = call(["channels", "list", "--format", "json"])
    assert "s3cret-token" not in listing
    (row,) = json.loads(listing)
    assert row["rules"][0]["min_severity"] == "high" and row["rules"][0]["labels"] == {"env": "prod"}
    assert "test message sent" in call(["channels", "test", "chat"])
    assert webhook.received[-1]["title"] == "Posture: test notification"
    call(["channels", "remove", "chat"])
    assert not Channel.objects.exists()
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {AuditAction.CHANNEL_ADD, AuditAction.CHANNEL_TEST, AuditAction.CHANNEL_REMOVE} <= actions


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["nonsense://x"], "Apprise does not understand"),
        (["email:not-an-address"], "not an e-mail address"),
        (["json://127.0.0.1/h", "--events", "opened,sometimes"], "not sometimes"),
        (["json://127.0.0.1/h", "--label", "=x"], "KEY=VALUE"),
        (["json://127.0.0.1/h", "--rule", "no-such-rule"], "unknown rule"),
    ],
)
def test_channels_add_explains_bad_input_and_saves_nothing(args, error):
    with pytest.raises(CommandError, match=error):
        call_command("channels", "add", "bad", *args)
    assert not Channel.objects.exists()


@pytest.mark.django_db
def test_channels_test_fails_with_the_reason_when_nothing_listens():
    port = Webhook()
    port.stop()
    add_channel("dead", port.url())
    with pytest.raises(CommandError, match="dead: "):
        call_command("channels", "test", "dead")
    assert Channel.objects.get().last_error


@pytest.mark.django_db
def test_email_channels_use_the_mail_settings(mailoutbox):
    channel = service.new_channel("mail", "email:ops@example.com, sec@example.com")
    channel.add(actor=None, rule=AlertRule())
    assert service.test_channel(channel, actor=None)[0]
    assert mailoutbox[0].to == ["ops@example.com", "sec@example.com"]


# --- the channels page -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["outsider", "viewer", "analyst"])
def test_only_admins_see_and_change_channels(client, request, role):
    client.force_login(request.getfixturevalue(role))
    assert client.get("/alerts/").status_code == 403
    assert client.post("/alerts/channels/new/", {"name": "x", "target": "json://127.0.0.1/h", "events": ["opened"], "min_severity": "low"}).status_code == 403
    assert "/alerts/" not in client.get("/profile/").content.decode()
    assert not Channel.objects.exists()


@pytest.mark.django_db
def test_an_admin_adds_tests_scopes_and_removes_a_channel_on_its_page(client, admin, webhook):
    client.force_login(admin)
    secret_url = f"json://bot:s3cret-token@127.0.0.1:{webhook.port}/hook"
    form = {"name": "chat", "target": secret_url, "events": ["opened", "risk"], "min_severity": "high", "risk_points": "20", "labels_text": "env=prod"}
    assert client.post("/alerts/channels/new/", form).status_code == 302
    channel = Channel.objects.get()
    page = client.get("/alerts/").content.decode()
    assert "s3cret-token" not in page and "bot:****@" in page
    assert "opened, risk; severity ≥ high; env=prod; risk +20" in page
    client.post(f"/alerts/channels/{channel.pk}/test/")
    assert webhook.received[-1]["title"] == "Posture: test notification"
    assert "test message sent" in client.get("/alerts/").content.decode()
    rule = {"channel": channel.pk, "events": ["unreachable"], "min_severity": "low", "risk_points": "10", "rules_text": "host-network"}
    assert client.post("/alerts/rules/new/", rule).status_code == 302
    assert channel.rules.count() == 2
    client.post(f"/alerts/rules/{channel.rules.last().pk}/delete/")
    client.post(f"/alerts/channels/{channel.pk}/toggle/")
    assert not Channel.objects.get().enabled
    client.post(f"/alerts/channels/{channel.pk}/delete/")
    assert not Channel.objects.exists()
    assert AuditEntry.objects.filter(actor=admin).count() == 6


@pytest.mark.django_db
def test_the_channel_form_explains_bad_input(client, admin):
    client.force_login(admin)
    bad = {"name": "x", "target": "nonsense://what", "events": ["opened"], "min_severity": "low", "risk_points": "10", "rules_text": "no-such"}
    response = client.post("/alerts/channels/new/", bad)
    assert response.status_code == 400
    html = response.content.decode()
    assert "unknown rule id(s): no-such" in html
    bad["rules_text"] = ""
    assert "Apprise does not understand" in client.post("/alerts/channels/new/", bad).content.decode()
    assert not Channel.objects.exists()


@pytest.mark.django_db
def test_a_failing_channel_is_shown_failing_and_the_page_query_count_is_constant(client, admin, django_assert_max_num_queries):
    client.force_login(admin)
    for i in range(2):
        add_channel(f"c{i}", f"json://127.0.0.1:9/h{i}")
    Channel.objects.get(name="c0").record_failure("Connection refused", gave_up=True)
    with django_assert_max_num_queries(12) as few:
        page = client.get("/alerts/").content.decode()
    assert "Failing" in page and "Connection refused" in page
    for i in range(2, 8):
        add_channel(f"c{i}", f"json://127.0.0.1:9/h{i}", "--events", "risk")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/alerts/")


@pytest.mark.django_db
def test_a_sent_notification_is_never_sent_again(webhook):
    from posture.tasks import send_notification

    channel = add_channel("ops", webhook.url())
    (note,) = Notification.objects.claim(
        Channel.objects.with_rules(),
        [transition(key="finding-event:1", severity="high", rule_id="host-network", title="Shares the host network")],
        batch="poll:1",
    )
    send_notification.apply((note.pk,), task_id="first")
    send_notification.apply((note.pk,), task_id="second")  # a duplicate delivery of the task
    assert len(webhook.received) == 1 and "Shares the host network" in webhook.received[0]["message"]
    note.refresh_from_db()
    assert note.status == NotificationStatus.SENT and note.attempts == 1
    assert Notification.objects.claim(Channel.objects.with_rules(), [transition(key="finding-event:1", severity="high")], batch="poll:1") == []
    assert channel.notifications.count() == 1


@pytest.mark.django_db
def test_paused_hosts_are_not_announced_as_stale():
    paused = DockerHost.objects.create(name="paused", url="unix:///run/paused.sock", enabled=False)
    never = DockerHost.objects.create(name="never-polled", url="unix:///run/never.sock")
    for host in (paused, never):  # registered two days ago: saved, so stale_at follows
        host.created_at = timezone.now() - timedelta(days=2)
        host.save(update_fields=["created_at"])
    assert [t.host_name for t in transitions.stale(timezone.now())] == [never.name]
    assert paused.name not in {t.host_name for t in transitions.stale(timezone.now())}
