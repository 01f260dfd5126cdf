"""The real engine's answers the simulated hosts are made from.

``recordings/engine.json`` is recorded from a throw-away dockerd by
``python -m tests.record_engine simulator posture/simulate/recordings/engine.json``:
one container per exposure the fleet mixes, the list answers, the /_ping headers and
the events the scenario produced. Loading it undoes what is particular to the test
engine (its temporary roots, its bridge name, masquerading switched off) so the
answers read like a stock engine's.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PATH = Path(__file__).parent / "recordings" / "engine.json"

# What the recording engine had that a stock engine does not; (pattern, replacement).
_NORMALISE = (
    (re.compile(r"/tmp/posture-engine-[A-Za-z0-9_-]+/data"), "/var/lib/docker"),
    (re.compile(r"/tmp/pst-\d+-\d+"), "/run/docker"),
    (re.compile(r'"pst\de\d+"'), '"docker0"'),
    (re.compile(r'("com\.docker\.network\.bridge\.enable_ip_masquerade": )"false"'), r'\1"true"'),
    (re.compile(r"/run/posture-test/docker\.sock"), "/var/run/docker.sock"),
)

# The recorded containers the simulator starts from, by the name the scenario gave them.
TEMPLATES = ("clean", "published", "compose-web", "v6-only", "hostnet", "caps", "pid-host", "sock", "privileged", "exited")


@dataclass(frozen=True)
class Recording:
    version: dict[str, Any]
    info: dict[str, Any]
    ping: dict[str, str]
    containers: dict[str, dict[str, Any]]  # inspect answers by container name
    listed: dict[str, dict[str, Any]]  # /containers/json entries by container name
    networks: dict[str, dict[str, Any]]  # inspect answers by network name
    events: tuple[dict[str, Any], ...]

    @property
    def api_version(self) -> str:
        return str(self.version["ApiVersion"])

    @property
    def min_api_version(self) -> str:
        return str(self.version.get("MinAPIVersion") or "1.12")

    def container(self, name: str) -> dict[str, Any]:
        """A fresh deep copy of one recorded inspect answer."""
        return json.loads(self._container_text[name])

    @functools.cached_property
    def _container_text(self) -> dict[str, str]:
        return {name: json.dumps(data) for name, data in self.containers.items()}

    def part(self, name: str, *path: str) -> Any:
        """A fresh copy of one part of a recorded inspect answer, e.g. ``("sock", "Mounts")``."""
        key = (name, *path)
        if key not in self._parts:
            value: Any = self.containers[name]
            for step in path:
                value = value[step]
            self._parts[key] = json.dumps(value)
        return json.loads(self._parts[key])

    @functools.cached_property
    def _parts(self) -> dict[tuple[str, ...], str]:
        return {}

    def network(self, name: str) -> dict[str, Any]:
        return json.loads(self._network_text[name])

    @functools.cached_property
    def _network_text(self) -> dict[str, str]:
        return {name: json.dumps(data) for name, data in self.networks.items()}


def normalise(text: str) -> str:
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return text


@functools.cache
def load(path: Path = PATH) -> Recording:
    raw = json.loads(normalise(path.read_text()))
    missing = [t for t in TEMPLATES if t not in {c["Name"].lstrip("/") for c in raw["containers"]}]
    if missing:
        raise ValueError(f"{path} lacks the recorded containers {', '.join(missing)}: re-record it (see its module docstring)")
    return Recording(
        version=raw["version"],
        info=raw["info"],
        ping=raw["ping"],
        containers={c["Name"].lstrip("/"): c for c in raw["containers"]},
        listed={c["Names"][0].lstrip("/"): c for c in raw["containers_list"]},
        networks={n["Name"]: n for n in raw["networks"]},
        events=tuple(raw["events"]),
    )
