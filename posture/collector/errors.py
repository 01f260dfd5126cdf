"""What can go wrong reading an engine, as one vocabulary for the collector's callers.

Every failure caused by an engine reaches the caller as an ``EngineError`` or a
``MalformedAnswer``; each class says with ``transient`` whether trying again later
can help, so the poller decides retries by class, never by parsing messages.
"""

from __future__ import annotations


class EngineError(Exception):
    """The engine could not be read. ``transient`` errors are worth a retry."""

    transient = False


class EngineUnreachable(EngineError):
    """No answer, or half of one: the network or the engine may recover."""

    transient = True


class DeadlineExceeded(EngineUnreachable):
    """The poll's (or the connection test's) overall deadline passed.

    Transient: a slow engine may be faster next time; the backoff keeps it from
    taking a worker every interval.
    """


class EngineRejected(EngineError):
    """TLS, SSH, authorization or the address guard refused us: retrying will not help."""


class EngineRedirected(EngineRejected):
    """The engine answered with a redirect. Posture never follows one: the target is
    whatever the engine names, past the address guard, so a redirect is refused."""


class AnswerTooLarge(EngineError):
    """An answer, or a poll's answers together, passed their size limit."""


class MalformedAnswer(ValueError):
    """The engine answered, but not with what the Docker Engine API documents."""

    transient = False
