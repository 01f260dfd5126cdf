"""Docker engine → immutable ``HostSnapshot``. Imports nothing from Django."""

from .parse import MalformedAnswer
from .snapshot import HostSnapshot
from .target import EngineTarget, EngineURL, InvalidEngineURL, parse_engine_url

__all__ = ["EngineTarget", "EngineURL", "HostSnapshot", "InvalidEngineURL", "MalformedAnswer", "parse_engine_url"]
