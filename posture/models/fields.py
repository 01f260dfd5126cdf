from __future__ import annotations

import hashlib
from typing import Any

from django.db import models

from posture import crypto
from posture.collector.text import truncate


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code only ever sees plaintext.

    A database dump alone reveals nothing: the key lives in the environment.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return crypto.decrypt(value) if value else ""

    def get_prep_value(self, value: Any) -> str:
        return crypto.encrypt(value) if value else ""


def clip(model: type[models.Model], field: str, value: str) -> str:
    """``value`` cut to the column's length with the collector's visible mark: text read
    from an engine may be any length, and a poll must not fail (DataError) over a long name."""
    limit = model._meta.get_field(field).max_length
    return value if limit is None else truncate(value, limit)


def fit_fingerprint(fingerprint: str, limit: int) -> str:
    """An identity that fits its column and stays unique: a long tail becomes its hash."""
    if len(fingerprint) <= limit:
        return fingerprint
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()
    return f"{fingerprint[: limit - len(digest) - 1]}#{digest}"
