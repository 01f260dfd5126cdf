"""Rule tests claim the rules they prove with ``@pytest.mark.rule("id", ...)``; a claim
holds only if the test saw each claimed rule flag one subject and stay silent on another
(through ``tests.builders.hits``/``subjects``/``only``). ``test_catalog.py`` then checks
that every rule of the catalog is claimed by some test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import builders


@pytest.fixture(autouse=True)
def _claimed_rules_are_proven_both_ways(request: pytest.FixtureRequest) -> Iterator[None]:
    claimed = {rule_id for mark in request.node.iter_markers("rule") for rule_id in mark.args}
    builders.OBSERVED.clear()
    yield
    unproven = {rule_id: sorted(builders.OBSERVED.get(rule_id, set())) for rule_id in sorted(claimed)}
    unproven = {rule_id: seen for rule_id, seen in unproven.items() if seen != ["flagged", "silent"]}
    assert not unproven, f"claimed by @pytest.mark.rule but not seen both flagging and silent (seen: {unproven})"
