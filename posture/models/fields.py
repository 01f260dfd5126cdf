from __future__ import annotations

from typing import Any

from django.db import models

from posture import crypto


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code only ever sees plaintext.

    A database dump alone reveals nothing: the key lives in the environment.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return crypto.decrypt(value) if value else ""

    def get_prep_value(self, value: Any) -> str:
        return crypto.encrypt(value) if value else ""
