"""Where each time-sliced retention pass has got to (``posture/retention.py``)."""

from __future__ import annotations

from datetime import datetime

from django.db import models


class RetentionMark(models.Model):
    """A pass over old rows resumes here: rows before ``reached`` were already pruned, so
    each run reads only what aged past the policy since the last one, however much history
    there is, and a run cut short by its time budget continues where it stopped."""

    name = models.CharField(max_length=40, unique=True)
    reached = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} @ {self.reached:%Y-%m-%d %H:%M}"

    @classmethod
    def get(cls, name: str) -> datetime | None:
        return cls.objects.filter(name=name).values_list("reached", flat=True).first()

    @classmethod
    def move(cls, name: str, reached: datetime) -> None:
        cls.objects.update_or_create(name=name, defaults={"reached": reached})
