"""Docker engine → immutable ``HostSnapshot``. Imports nothing from Django."""

from .budget import Budget
from .errors import AnswerTooLarge, DeadlineExceeded, EngineError, EngineRedirected, EngineRejected, EngineUnreachable, MalformedAnswer
from .snapshot import HostSnapshot, Unchanged
from .target import EngineTarget, EngineURL, InvalidEngineURL, parse_engine_url

__all__ = [
    "AnswerTooLarge",
    "Budget",
    "DeadlineExceeded",
    "EngineError",
    "EngineRedirected",
    "EngineRejected",
    "EngineTarget",
    "EngineURL",
    "EngineUnreachable",
    "HostSnapshot",
    "InvalidEngineURL",
    "MalformedAnswer",
    "Unchanged",
    "parse_engine_url",
]
