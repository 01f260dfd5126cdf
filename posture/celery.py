"""The Celery app ``posture``: ``celery -A posture worker`` / ``celery -A posture beat``."""

from __future__ import annotations

import os
from typing import Any

import celery
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


app = celery.Celery("posture", task_cls=Task)
# CELERY_* names in settings.py; Celery's Django fix-up closes stale database
# connections before and after every task.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["posture"])


def _beat_schedule() -> dict[str, dict[str, object]]:
    from django.conf import settings

    return {
        "dispatch-polls": {"task": "posture.tasks.dispatch_polls", "schedule": settings.DISPATCH_EVERY},
        "expire-acceptances": {"task": "posture.tasks.expire_acceptances", "schedule": 60.0},
        "dispatch-reports": {"task": "posture.tasks.dispatch_reports", "schedule": 60.0},
        "prune-history": {"task": "posture.tasks.prune_history", "schedule": settings.RETENTION_EVERY},
    }


@app.on_after_configure.connect
def _configure(sender: celery.Celery, **kwargs: object) -> None:
    sender.conf.beat_schedule = _beat_schedule()
