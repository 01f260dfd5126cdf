"""Credentials at rest: Fernet with a dedicated key list (first encrypts, all decrypt)."""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialKeyError(RuntimeError):
    pass


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise CredentialKeyError("POSTURE_CREDENTIALS_KEY must be a comma-separated list of Fernet keys") from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.POSTURE_CREDENTIALS_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialKeyError(
            "a stored credential cannot be decrypted with the configured keys; was POSTURE_CREDENTIALS_KEY changed without keeping the old key?"
        ) from exc
