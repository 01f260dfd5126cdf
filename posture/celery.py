"""The Celery app ``posture``: ``celery -A posture worker`` / ``celery -A posture beat``."""

from __future__ import annotations

import os
from typing import Any

import celery
from celery import signals
from celery.contrib.django.task import DjangoTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")


class Task(DjangoTask):
    """Time limits are the worker's own. Celery copies the *sender's* task attributes into
    the message, so a web process or a command with other settings would decide how long
    a worker's poll may run; the message carries none and the worker applies its own.
    (DjangoTask gives ``delay_on_commit``.)"""

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        options.setdefault("time_limit", None)
        options.setdefault("soft_time_limit", None)
        return super().apply_async(args, kwargs, **options)


def guard_kombu_redis_channel() -> None:
    """Make a Redis channel whose connection is already gone fail as a *connection* error.

    kombu 5.7.0 (pinned): when Redis goes away, the consumer releases its connection
    (``transport.client = None``) and a channel closed after that still tries to put its
    unacknowledged messages back; building a client then reads ``None.hostname`` in
    ``Channel._connparams``, an AttributeError the worker treats as unrecoverable and
    exits on (celery/kombu#970, celery/celery#10205). As a connection error it is what
    it is: the worker reconnects, and the messages stay in Redis's unacked set, restored
    after the visibility timeout (their polls are dispatched again long before).
    ``tests/test_celery_config.py`` proves the guard; the chaos suite proves the worker
    outlives Redis.
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "posture_guard", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = getattr(self, "connection", None)
        if transport is None or getattr(transport, "client", None) is None:
            raise kombu_redis.redis.exceptions.ConnectionError("the broker connection was closed before this channel finished with it")
        return original(self, asynchronous)

    _connparams.posture_guard = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams


guard_kombu_redis_channel()
app = celery.Celery("posture", task_cls=Task)
# CELERY_* names in settings.py. CELERY_DB_REUSE_MAX keeps Celery's Django fix-up from
# closing the database connection around every task (a reconnect costs a poll ~20 ms of
# CPU between worker and PostgreSQL); ``_database_hygiene`` below closes only connections
# that broke or outlived CONN_MAX_AGE, as Django does around a request.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["posture"])


@signals.task_prerun.connect
@signals.task_postrun.connect
def _database_hygiene(task: Any = None, **kwargs: object) -> None:
    # Not for a task run in the caller's process (``apply``, eager mode): the caller
    # owns that connection, perhaps mid-transaction.
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


def _beat_schedule() -> dict[str, dict[str, object]]:
    from django.conf import settings

    return {
        "dispatch-polls": {"task": "posture.tasks.dispatch_polls", "schedule": settings.DISPATCH_EVERY},
        "expire-exceptions": {"task": "posture.tasks.expire_exceptions", "schedule": 60.0},
        "dispatch-reports": {"task": "posture.tasks.dispatch_reports", "schedule": 60.0},
        "notify-scan": {"task": "posture.tasks.notify_scan", "schedule": 60.0},
        "prune-history": {"task": "posture.tasks.prune_history", "schedule": settings.RETENTION_EVERY},
    }


@app.on_after_configure.connect
def _configure(sender: celery.Celery, **kwargs: object) -> None:
    sender.conf.beat_schedule = _beat_schedule()
