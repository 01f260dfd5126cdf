"""Engine events, pure: which ones matter, reading one line of the stream, and the
debounce that turns a burst of them into one poll. No I/O, no Django."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# What can change a host's network exposure. ``die`` covers stop and kill; a removed
# network is ``destroy`` on current engines and ``remove`` on some; a daemon ``reload``
# can change the daemon settings the daemon rules read.
ACTIONS = {
    "container": frozenset({"create", "start", "die", "destroy", "rename", "update"}),
    "network": frozenset({"create", "connect", "disconnect", "destroy", "remove"}),
    "daemon": frozenset({"reload"}),
}
# The engine's own filter (AND across keys, OR within one), so it sends nothing else.
FILTERS = json.dumps({"type": sorted(ACTIONS), "event": sorted(set().union(*ACTIONS.values()))}, separators=(",", ":"))
# A real event is well under 4 KiB even with many labels; a line past this is not one,
# and reading stops before it costs more memory.
MAX_EVENT_BYTES = 64 * 1024
NANO = 1_000_000_000


class BadEvent(ValueError):
    """A line of the stream that is not an engine event."""


@dataclass(frozen=True)
class Event:
    type: str
    action: str
    time_nano: int
    subject: str = ""

    @property
    def relevant(self) -> bool:
        return self.action in ACTIONS.get(self.type, ())


def parse_event(line: bytes) -> Event:
    """One line of ``/events``. Raises ``BadEvent`` for anything that is not an event."""
    if len(line) > MAX_EVENT_BYTES:
        raise BadEvent(f"an event line of more than {MAX_EVENT_BYTES // 1024} KiB")
    try:
        raw: Any = json.loads(line)
    except (ValueError, RecursionError):
        raise BadEvent(f"not JSON: {line[:80]!r}") from None
    if not isinstance(raw, dict):
        raise BadEvent("an event is a JSON object")
    kind, action, nano = raw.get("Type"), raw.get("Action"), raw.get("timeNano")
    if nano is None and isinstance(raw.get("time"), int):
        nano = raw["time"] * NANO  # engines before API 1.22 give seconds only
    if not isinstance(kind, str) or not isinstance(action, str) or not isinstance(nano, int) or isinstance(nano, bool) or nano < 0:
        raise BadEvent("an event needs Type, Action and timeNano")
    actor = raw.get("Actor")
    attributes = actor.get("Attributes") if isinstance(actor, dict) else None
    name = attributes.get("name") if isinstance(attributes, dict) else None
    return Event(type=kind[:40], action=action[:80], time_nano=nano, subject=name[:200] if isinstance(name, str) else "")


def since_param(after_nano: int) -> str:
    """The engine's ``since`` for events strictly after ``after_nano`` (it includes its bound)."""
    at = after_nano + 1
    return f"{at // NANO}.{at % NANO:09d}"


@dataclass
class Burst:
    """Events collected for one poll."""

    events: int = 0
    first_at: float = 0.0  # watcher's monotonic clock
    last_at: float = 0.0
    first_nano: int = 0  # engine clock
    last_nano: int = 0
    subjects: set[str] = field(default_factory=set)


@dataclass
class Debounce:
    """A burst ends after ``quiet`` seconds without an event, or ``max_delay`` after its
    first event however busy the engine stays (a ``compose up`` is one poll, a host
    that never goes quiet is still polled)."""

    quiet: float
    max_delay: float
    burst: Burst | None = None
    hold_until: float = 0.0  # not due before this (the host is being polled, or the broker is down)

    def add(self, event: Event, now: float) -> float:
        """Count ``event`` and return when the burst is due. An event with no engine time
        (a reconnection) asks for a poll without moving where the stream resumes."""
        b = self.burst
        if b is None:
            b = self.burst = Burst(first_at=now)
        b.events += 1
        b.last_at = now
        if event.time_nano:
            b.first_nano = b.first_nano or event.time_nano
            b.last_nano = event.time_nano
        if event.subject and len(b.subjects) < 20:
            b.subjects.add(event.subject)
        return self.due_at()

    def due_at(self) -> float:
        b = self.burst
        assert b is not None
        return max(self.hold_until, min(b.last_at + self.quiet, b.first_at + self.max_delay))

    def put_back(self, burst: Burst, hold_until: float) -> None:
        """A burst that could not be sent yet: merged into whatever arrived since, and
        not due again before ``hold_until``."""
        self.hold_until = hold_until
        if self.burst is None:
            self.burst = burst
            return
        b = self.burst
        b.events += burst.events
        b.first_at = burst.first_at
        b.first_nano = burst.first_nano or b.first_nano
        b.last_nano = b.last_nano or burst.last_nano
        b.subjects |= burst.subjects

    def take(self) -> Burst | None:
        burst, self.burst = self.burst, None
        return burst
