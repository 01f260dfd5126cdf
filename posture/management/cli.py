"""What the management commands share."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


def command_error(exc: ValidationError) -> CommandError:
    """One line an operator can act on: ``field: message; field: message``."""
    return CommandError("; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()))
