"""Host labels (``KEY=VALUE``): the one parser for forms, commands, filters and reports.

Keys are validated because they become part of database lookups on the ``labels``
JSON field; values are free text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.core.exceptions import ValidationError

KEY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,62})$")
MAX_VALUE = 200


def parse_label(text: str) -> tuple[str, str]:
    """``env=prod`` → ``("env", "prod")``; a clear ValidationError otherwise."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ValidationError(f"“{text}” is not KEY=VALUE.", code="label")
    if not KEY.match(key):
        raise ValidationError(f"label key “{key}”: use letters, digits, dots, dashes, slashes and underscores, starting with a letter or digit.", code="label")
    if len(value) > MAX_VALUE:
        raise ValidationError(f"label “{key}”: the value is longer than {MAX_VALUE} characters.", code="label")
    return key, value


def parse_labels(text: str) -> dict[str, str]:
    """``env=prod, team=core`` (commas or new lines) → a dict."""
    return dict(parse_label(p) for p in text.replace("\n", ",").split(",") if p.strip())


def parse_label_list(values: Iterable[str]) -> dict[str, str]:
    """Repeated ``--label KEY=VALUE`` options → a dict."""
    return dict(parse_label(v) for v in values)


def describe(labels: dict[str, str]) -> str:
    """``env=prod, team=core``, or "all hosts" for an empty label scope."""
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "all hosts"
