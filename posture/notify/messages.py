"""How a grouped notification reads: a title that counts, and one line per transition with its link."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from django.conf import settings

from posture.models import AlertEvent

# A message lists at most this many transitions; the rest are counted, with a link per host.
MAX_LINES = 40

_NOUNS = {
    AlertEvent.OPENED: ("finding opened", "findings opened"),
    AlertEvent.REOPENED: ("finding reopened", "findings reopened"),
    AlertEvent.UNREACHABLE: ("host unreachable", "hosts unreachable"),
    AlertEvent.RISK: ("risk rise", "risk rises"),
    AlertEvent.EXPIRING: ("exception expiring", "exceptions expiring"),
}


def link(path: str) -> str:
    return f"{settings.POSTURE_BASE_URL}{path}"


def title(transitions: list[dict[str, Any]]) -> str:
    counts = Counter(t["event"] for t in transitions)
    parts = [f"{n} {_NOUNS[AlertEvent(e)][n != 1]}" for e, n in counts.items()]
    hosts = sorted({t["host"] for t in transitions if t["host"]})
    where = f" on {hosts[0]}" if len(hosts) == 1 else f" on {len(hosts)} hosts" if hosts else ""
    return f"Posture: {', '.join(parts)}{where}"


def line(t: dict[str, Any]) -> str:
    if t["severity"]:
        what = f"[{t['severity'].upper()}] {AlertEvent(t['event']).label.lower()}: {t['title']}"
        if t["subject"]:
            what += f" ({t['subject']})"
        if t["event"] == AlertEvent.EXPIRING and t["detail"].get("until"):
            what += f", until {t['detail']['until'][:10]}"
    else:
        what = t["title"]
    return f"- {what}\n  {link(t['path'])}"


def body(transitions: list[dict[str, Any]]) -> str:
    by_host: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in transitions:
        by_host[t["host"]].append(t)
    out: list[str] = []
    shown = 0
    for host, items in by_host.items():
        out.append(f"{host}:" if host else "Fleet:")
        for t in items:
            if shown >= MAX_LINES:
                break
            out.append(line(t))
            shown += 1
    if len(transitions) > shown:
        out.append(f"… and {len(transitions) - shown} more, on the host pages.")
    return "\n".join(out)


def test_message() -> tuple[str, str]:
    return "Posture: test notification", f"This channel works. Alerts will link to {settings.POSTURE_BASE_URL}/."
