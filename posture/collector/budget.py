"""What one poll (or one connection test) may spend on an engine: time and bytes.

A per-read timeout does not bound a call: an engine sending a byte every few seconds
never trips it. A ``Budget`` is one overall deadline for every call of a poll — list,
inspects in the thread pool, TLS handshakes, the ssh tunnel — and two size limits,
one per answer and one for the poll's answers together, counted as the bytes arrive
so the limit holds before the memory is spent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import AnswerTooLarge, DeadlineExceeded
from .text import size

MiB = 1024 * 1024
# A container list of ~10,000 containers, or one inspect with 16 MiB of labels.
DEFAULT_MAX_ANSWER_BYTES = 16 * MiB
# Every answer of one poll together: a first poll of a few thousand containers.
DEFAULT_MAX_POLL_BYTES = 64 * MiB
DEFAULT_POLL_SECONDS = 60.0
DEFAULT_PROBE_SECONDS = 10.0


class Budget:
    """One deadline and two size limits, shared by every call of one poll.

    The clock starts when the budget is made. Thread-safe: the inspect pool's threads
    count their bytes into the same budget.
    """

    def __init__(
        self,
        seconds: float,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_poll_bytes: int = DEFAULT_MAX_POLL_BYTES,
        *,
        name: str = "poll",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if seconds <= 0 or max_answer_bytes <= 0 or max_poll_bytes <= 0:
            raise ValueError("a budget's deadline and size limits must be positive")
        self.seconds = float(seconds)
        self.max_answer_bytes = int(max_answer_bytes)
        self.max_poll_bytes = int(max_poll_bytes)
        self.name = name
        self._clock = clock
        self.deadline = clock() + self.seconds
        self._lock = threading.Lock()
        self._read = 0
        self._expired = False

    def __repr__(self) -> str:
        return f"Budget({self.seconds:g}s {self.name}, {size(self.max_answer_bytes)}/answer, {size(self.max_poll_bytes)}/{self.name}, {self.remaining():.1f}s left)"

    @classmethod
    def for_probe(cls, seconds: float = DEFAULT_PROBE_SECONDS, **limits: int) -> Budget:
        return cls(seconds, name="connection test", **limits)

    # --- time ---------------------------------------------------------------------

    def remaining(self) -> float:
        """Seconds left before the deadline; 0 once it has passed."""
        if self._expired:
            return 0.0
        return max(0.0, self.deadline - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def expire(self) -> None:
        """End the budget now (the watchdog does, when it cuts the connections)."""
        self._expired = True

    def exceeded(self) -> DeadlineExceeded:
        """The error that says which limit was used."""
        return DeadlineExceeded(f"the engine did not finish answering within the {self.seconds:g} s {self.name} deadline")

    def check(self) -> None:
        if self.expired:
            raise self.exceeded()

    def timeout(self, per_read: float) -> float:
        """The timeout for one blocking step: the per-read timeout, never past the deadline."""
        self.check()
        return max(0.001, min(per_read, self.remaining()))

    # --- bytes --------------------------------------------------------------------

    def take(self, n: int, answer_so_far: int, what: str = "an answer") -> None:
        """Count ``n`` more bytes read, of which ``answer_so_far`` belong to the current
        answer; ``AnswerTooLarge`` naming the limit as soon as one is passed."""
        if answer_so_far > self.max_answer_bytes:
            raise AnswerTooLarge(f"the engine's answer to {what} passed the {size(self.max_answer_bytes)} limit per answer")
        with self._lock:
            self._read += n
            total = self._read
        if total > self.max_poll_bytes:
            raise AnswerTooLarge(f"the engine's answers passed the {size(self.max_poll_bytes)} limit per {self.name}")
