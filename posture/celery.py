"""The Celery app ``posture``: ``celery -A posture worker`` / ``celery -A posture beat``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")

app = Celery("posture")
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
        "notify-scan": {"task": "posture.tasks.notify_scan", "schedule": 60.0},
    }


@app.on_after_configure.connect
def _configure(sender: Celery, **kwargs: object) -> None:
    sender.conf.beat_schedule = _beat_schedule()
