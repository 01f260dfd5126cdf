"""Record a real engine's API answers as a test fixture.

    python -m tests.record_engine mixed-exposure tests/fixtures/engine/mixed-exposure.json
    python -m tests.record_engine exposed-daemon tests/fixtures/engine/exposed-daemon.json
    python -m tests.record_engine simulator posture/simulate/recordings/engine.json

starts a throw-away engine, builds the scenario of that name, and writes the raw
answers of /version, /info, /networks/{id} and /containers/{id}/json (and, as
``ping``, ``networks_list``, ``containers_list`` and ``events``, the headers of /_ping,
the list answers and every event since the scenario began). The rules are then tested
on the file without an engine (``tests/test_recorded_engine.py``); the simulated fleet
(``posture/simulate``) builds its hosts from the ``simulator`` recording.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .engines import TestEngine
from .scenarios import exposed_daemon, mixed_exposure, simulator_templates

SCENARIOS = {
    "mixed-exposure": ([], mixed_exposure),
    "exposed-daemon": (exposed_daemon.ARGS, exposed_daemon),
    "simulator": ([], simulator_templates),
}


def record(engine: TestEngine, since: float) -> dict[str, object]:
    api = engine.client.api
    ping = api._get(api._url("/_ping"))
    networks, containers = api.networks(), api.containers(all=True)
    return {
        "version": api.version(),
        "info": api.info(),
        "ping": {k: v for k, v in ping.headers.items() if k.lower() not in ("date", "content-length")},
        "networks_list": networks,
        "networks": [api.inspect_network(n["Id"]) for n in networks],
        "containers_list": containers,
        "containers": [api.inspect_container(c["Id"]) for c in containers],
        "events": list(api.events(since=since, until=time.time(), decode=True)),
    }


def main(scenario: str, out: str) -> None:
    args, build = SCENARIOS[scenario]
    engine = TestEngine(name="record", index=9, extra_args=list(args)).start()
    try:
        since = time.time()
        build(engine)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record(engine, since), indent=1, sort_keys=True) + "\n")
    finally:
        engine.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
