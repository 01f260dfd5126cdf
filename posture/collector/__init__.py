"""Docker engine → immutable ``HostSnapshot``. Imports nothing from Django."""

from .budget import Budget
from .errors import AnswerTooLarge, DeadlineExceeded, EngineError, EngineRedirected, EngineRejected, EngineUnreachable, MalformedAnswer
from .snapshot import HostSnapshot
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
    "parse_engine_url",
]
