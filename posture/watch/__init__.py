"""The event-stream watcher (``manage.py watch``): engines' ``/events`` → debounced polls.

- ``events.py``: which events matter, parsing one, the debounce; pure
- ``stream.py``: one engine's stream over aiohttp (unix, tcp+TLS, ssh tunnel); no Django
- ``watcher.py``: the process: leases, one task per held host, the dispatcher

Lease and resume decisions are on ``HostWatch`` and ``Watcher`` (``posture/models/watch.py``).
"""
