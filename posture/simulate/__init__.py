"""A simulated fleet: fake Docker engines built from a real engine's recorded answers.

One asyncio process serves N engines, each on its own unix socket, each different by
seed (names, ids, compose projects, images and a mix of exposures), optionally churned
(containers stopped, started, re-created, re-published, renamed) with the matching
``/events``. Used by ``manage.py simulate``, the benchmark and scale tests. Imports
nothing from Django.

- ``recording.py``: the recorded answers the hosts are made from
- ``catalog.py``: what runs on a host, drawn by seed
- ``answers.py``: host state rendered as Engine API JSON
- ``host.py``: one engine: cached answers, event log, churn
- ``server.py``: the HTTP routes and the ``/events`` stream
- ``fleet.py``: running N of them (foreground or on a thread)
"""

from __future__ import annotations

from .fleet import Fleet, Simulator, SimulatorError, simulated_fleet

__all__ = ["Fleet", "Simulator", "SimulatorError", "simulated_fleet"]
