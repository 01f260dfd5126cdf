"""Agreement with docker-bench-security on the same engine: every WARN it reports for
5.4, 5.5, 5.8, 5.10, 5.14, 5.16, 5.17, 5.21, 5.31 and 5.32 is a finding of ours, and
where it is wrong we are right."""

from __future__ import annotations

from .observe import conclusions
from .reference_bench import bench_warnings
from .scenarios import mixed_exposure

ITEMS = {"5.4", "5.5", "5.8", "5.10", "5.14", "5.16", "5.17", "5.21", "5.31", "5.32"}


def test_every_reference_warning_is_ours_and_where_it_is_blind_we_are_not(engine):
    mixed_exposure(engine)
    warnings = bench_warnings(engine.client)
    specs = conclusions(engine.url)
    theirs = {w for w in warnings if w[0] in ITEMS}
    ours = {(s.cis, s.subject_name) for s in specs if s.cis in ITEMS}
    assert theirs, "the scenario should make the reference warn"
    assert theirs <= ours, f"reference warnings we missed: {sorted(theirs - ours)}"

    everything = {(s.cis, s.subject_name) for s in specs}
    # [::] bindings, container: network modes, stopped containers.
    for blind in [("5.14", "v6-only"), ("5.10", "inherits"), ("5.5", "stopped-priv"), ("5.14", "stopped-priv")]:
        assert blind not in warnings and blind in everything, blind
    # The default bridge is found by its name, though this engine's interface is not docker0.
    assert ("5.30", "web") in everything
