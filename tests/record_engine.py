"""Record a real engine's API answers as a test fixture.

    python -m tests.record_engine mixed-exposure tests/fixtures/engine/mixed-exposure.json
    python -m tests.record_engine exposed-daemon tests/fixtures/engine/exposed-daemon.json

starts a throw-away engine, builds the scenario of that name, and writes the raw
answers of /version, /info, /networks/{id} and /containers/{id}/json. The rules are
then tested on the file without an engine (``tests/test_recorded_engine.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .engines import TestEngine
from .scenarios import exposed_daemon, mixed_exposure

SCENARIOS = {"mixed-exposure": ([], mixed_exposure), "exposed-daemon": (exposed_daemon.ARGS, exposed_daemon)}


def record(engine: TestEngine) -> dict[str, object]:
    api = engine.client.api
    return {
        "version": api.version(),
        "info": api.info(),
        "networks": [api.inspect_network(n["Id"]) for n in api.networks()],
        "containers": [api.inspect_container(c["Id"]) for c in api.containers(all=True)],
    }


def main(scenario: str, out: str) -> None:
    args, build = SCENARIOS[scenario]
    engine = TestEngine(name="record", index=9, extra_args=list(args)).start()
    try:
        build(engine)
        Path(out).write_text(json.dumps(record(engine), indent=1, sort_keys=True) + "\n")
    finally:
        engine.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
