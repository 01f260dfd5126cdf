"""The catalog as a whole: every rule has a fast test both ways, well-formed metadata,
and ``evaluate`` orders, de-duplicates and marks stopped containers."""

from __future__ import annotations

import importlib
import re
from collections import defaultdict
from pathlib import Path

from posture.rules import RULES, SubjectType
from tests.builders import compose, conclude, container, hits, network, port, snapshot

ORDER = ["critical", "high", "medium", "low", "info"]


def _marks(value: object) -> list[object]:
    marks = value if isinstance(value, list) else [value]
    return [getattr(m, "mark", m) for m in marks]


def claims() -> dict[str, list[str]]:
    """rule id → the tests under tests/rules that claim it with ``@pytest.mark.rule``,
    read from the modules themselves so the answer does not depend on what was collected."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        module_marks = _marks(getattr(module, "pytestmark", []))
        for name, test in vars(module).items():
            if not name.startswith("test_") or not callable(test):
                continue
            for mark in module_marks + _marks(getattr(test, "pytestmark", [])):
                # Per-case claims: pytest.param(..., marks=pytest.mark.rule(...)).
                cases = mark.args[1] if mark.name == "parametrize" else []
                nested = [m for case in cases for m in _marks(list(getattr(case, "marks", ())))]
                for rule_mark in [mark, *nested]:
                    if rule_mark.name == "rule":
                        for rule_id in rule_mark.args:
                            found[rule_id].append(f"{path.name}::{name}")
    return found


def test_every_rule_in_the_catalog_has_a_fast_test_both_ways():
    claimed = claims()
    missing = sorted(r.id for r in RULES if r.id not in claimed)
    assert not missing, f"rules with no @pytest.mark.rule test under tests/rules: {missing}"
    unknown = sorted(set(claimed) - {r.id for r in RULES})
    assert not unknown, f"tests claim rules the catalog does not have: {unknown}"


def test_each_family_has_its_own_test_file():
    files = {p.stem for p in Path(__file__).parent.glob("test_*.py")}
    assert {f"test_{r.family}" for r in RULES} <= files


def test_rule_metadata_is_complete_and_well_formed():
    for rule in RULES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.id), rule.id
        assert rule.title and rule.rationale and "  " not in rule.rationale, rule.id
        # The enum member, not its string: evaluate() dispatches on identity.
        assert rule.severity in ORDER and isinstance(rule.subject, SubjectType), rule.id
        assert rule.cis is None or re.fullmatch(r"\d+\.\d+", rule.cis), rule.id


def test_conclusions_come_worst_first_then_by_rule_and_subject():
    snap = snapshot(
        [
            container("b-web", ports=[port(80, 8080)]),
            container("a-db", ports=[port(5432, 15432)]),
            container("edge", network_mode="host", running=False),
        ]
    )
    specs = conclude(snap)
    ranks = [ORDER.index(s.severity) for s in specs]
    assert ranks == sorted(ranks)
    web_first = [(s.rule_id, s.subject_key) for s in specs if s.rule_id == "port-all-interfaces"]
    assert web_first == [("port-all-interfaces", "a-db"), ("port-all-interfaces", "b-web")]


def test_stopped_containers_are_judged_and_marked_not_running():
    specs = conclude(snapshot([container("edge", network_mode="host", running=False)], networks=[network("bridge")]))
    assert {s.running for s in specs if s.subject_type == "container"} == {False}
    assert {s.running for s in specs if s.subject_type != "container"} == {None}


def test_a_container_replaced_between_list_and_inspect_gives_one_finding_per_fingerprint():
    # Two containers with one compose identity: the fingerprint, not the container, counts.
    first = container("shop-db-1", ports=[port(5432, 15432)], labels=compose("shop", "db"), id="a" * 64)
    second = container("shop_db_1", ports=[port(5432, 15432)], labels=compose("shop", "db"), id="b" * 64)
    specs = conclude(snapshot([first, second]))
    fingerprints = [s.fingerprint for s in specs]
    assert len(fingerprints) == len(set(fingerprints))
    assert list(hits(specs, "port-sensitive-service-exposed").values())[0].fingerprint == "port-sensitive-service-exposed|container|shop/db|5432/tcp"


def test_scaled_compose_replicas_stay_apart():
    replicas = [container(f"shop-web-{n}", ports=[port(80)], labels=compose("shop", "web", n)) for n in (1, 2)]
    keys = {s.subject_key for s in conclude(snapshot(replicas)) if s.rule_id == "port-all-interfaces"}
    assert keys == {"shop/web", "shop/web/2"}
