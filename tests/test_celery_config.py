"""The traps a year of unattended polling falls into, designed out in configuration."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from posture.celery import app
from posture.tasks import dispatch_reports, generate_report, poll_host

from .conftest import need


def test_polls_are_acknowledged_late_and_survive_a_lost_worker():
    assert poll_host.acks_late and poll_host.reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True


def test_polls_have_soft_and_hard_time_limits_and_bounded_retries():
    assert 0 < poll_host.soft_time_limit < poll_host.time_limit
    assert poll_host.max_retries == settings.POLL_MAX_RETRIES
    assert 0 < generate_report.soft_time_limit < generate_report.time_limit


@pytest.mark.real
def test_redis_visibility_timeout_outlasts_the_longest_task_and_retry():
    # Only the Redis transport redelivers after a visibility timeout: without REDIS_URL
    # there is nothing to check, and under CI that must fail rather than pass silently.
    if not settings.REDIS_URL:
        need("REDIS_URL is not set: the visibility timeout is a Redis broker setting")
    timeout = app.conf.broker_transport_options["visibility_timeout"]
    assert timeout > poll_host.time_limit + 60  # the longest retry delay of a poll
    assert timeout > generate_report.time_limit


def test_reports_run_on_their_own_queue():
    assert app.amqp.router.route({}, generate_report.name)["queue"].name == "reports"
    assert app.amqp.router.route({}, dispatch_reports.name)["queue"].name == "celery"


def test_database_connections_are_kept_across_tasks_and_closed_only_when_broken_or_old():
    # Celery's Django fix-up would close the connection around every task; with a reuse
    # count it leaves them, and our own handler closes unusable or obsolete ones instead.
    from celery import signals

    from posture.celery import _database_hygiene

    assert any(type(f).__name__ == "DjangoFixup" for f in app._fixups)
    assert app.conf.get("CELERY_DB_REUSE_MAX", 0) >= 1000
    receivers = [r() for _key, r in signals.task_prerun.receivers] + [r() for _key, r in signals.task_postrun.receivers]
    assert receivers.count(_database_hygiene) == 2


def test_beat_runs_the_dispatchers():
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert tasks == {
        "posture.tasks.dispatch_polls",
        "posture.tasks.expire_exceptions",
        "posture.tasks.dispatch_reports",
        "posture.tasks.notify_scan",
        "posture.tasks.prune_history",
    }


def test_models_and_migrations_agree(db):
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


def test_time_limits_are_the_workers_not_the_senders(monkeypatch):
    """The message carries no limits: the worker applies the ones its own settings gave it."""
    sent = {}
    monkeypatch.setattr(app, "send_task", lambda name, args, kwargs, **options: sent.update(options))
    poll_host.apply_async((1,))
    assert sent["time_limit"] is None and sent["soft_time_limit"] is None
    assert poll_host.soft_time_limit == settings.POLL_SOFT_TIME_LIMIT  # the worker's own, from its settings


def test_a_redis_channel_outliving_its_connection_fails_as_a_connection_error():
    """kombu 5.7.0 crashed the worker here with AttributeError('NoneType' … 'hostname'):
    restoring unacked messages on a channel whose transport had let go of its connection.
    As a connection error the worker reconnects instead (posture.celery.guard_kombu_redis_channel)."""
    from types import SimpleNamespace

    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel.__new__(kombu_redis.Channel)  # no socket: just the state left behind
    channel.connection = SimpleNamespace(client=None)  # what Connection._do_close_transport leaves
    with pytest.raises(kombu_redis.Transport.connection_errors) as raised:
        channel._connparams()
    assert not isinstance(raised.value, AttributeError)
