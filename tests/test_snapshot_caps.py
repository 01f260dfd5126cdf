"""What a snapshot keeps per container is bounded, with a visible mark where it was cut:
an engine decides how much it sends, not how much Posture stores on every poll."""

from __future__ import annotations

import pytest

from posture.collector.parse import (
    MAX_ITEMS,
    MAX_LABEL_BYTES,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_PORTS,
    MAX_TEXT,
    build_snapshot,
    cap_map,
    parse_container,
    parse_engine,
    parse_network,
)
from posture.collector.snapshot import Connection
from posture.collector.text import truncate

from .observe import snapshot_of

MB = 1024 * 1024


def inspect(**fields: object) -> dict:
    return {"Id": "c" * 64, "Name": "/app", "Config": {"Image": "busybox"}, "HostConfig": {}, "NetworkSettings": {}, "State": {"Status": "running"}} | fields


def test_a_20_mb_label_does_not_reach_the_snapshot():
    raw = inspect(Config={"Labels": {"huge": "x" * (20 * MB), "team": "payments"}})
    snapshot = build_snapshot(collected_at="", connection=Connection(scheme="unix"), version={}, info={}, networks=[], containers=[raw])
    value = snapshot.containers[0].labels["huge"]
    assert len(value) <= MAX_LABEL_VALUE and value.startswith("xxx") and value.endswith("…[truncated 20 MiB]")
    assert snapshot.containers[0].labels["team"] == "payments"
    assert len(snapshot.to_json()) < 10_000


def test_labels_are_capped_in_number_and_bytes_keeping_the_ones_posture_reads():
    labels = {f"a.label.{i:05d}": "v" * 100 for i in range(5000)}
    labels |= {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
    container = parse_container(inspect(Config={"Labels": labels}))
    assert len(container.labels) <= MAX_LABELS
    assert sum(len(k) + len(v) for k, v in container.labels.items()) <= MAX_LABEL_BYTES
    assert container.subject_key == "shop/web"  # compose labels survive the flood
    assert container.truncated == (f"labels: kept {len(container.labels)} of 5002",)


def test_long_keys_and_values_are_truncated_with_a_mark():
    kept, note = cap_map({"k" * 1000: "v"}, "labels")
    (key,) = kept
    assert len(key) <= 256 and key.endswith("…[truncated 768 B]") and note is None


@pytest.mark.parametrize(
    ("field", "value", "attribute", "limit"),
    [
        ("Mounts", [{"Type": "bind", "Source": f"/src/{i}", "Destination": f"/dst/{i}"} for i in range(1000)], "mounts", MAX_ITEMS),
        ("HostConfig", {"Devices": [{"PathOnHost": f"/dev/x{i}"} for i in range(1000)]}, "devices", MAX_ITEMS),
        ("HostConfig", {"CapAdd": [f"CAP_{i}" for i in range(1000)]}, "cap_add", MAX_ITEMS),
        ("HostConfig", {"ExtraHosts": [f"h{i}:10.0.0.1" for i in range(1000)]}, "extra_hosts", MAX_ITEMS),
        ("HostConfig", {"Sysctls": {f"net.x{i}": "1" for i in range(1000)}}, "sysctls", MAX_LABELS),
        ("NetworkSettings", {"Networks": {f"net{i}": {} for i in range(1000)}}, "attachments", MAX_ITEMS),
        ("HostConfig", {"PortBindings": {f"{i}/tcp": [{"HostPort": str(i)}] for i in range(1, 10001)}}, "port_bindings", MAX_PORTS),
    ],
)
def test_collections_are_capped_with_a_note(field, value, attribute, limit):
    container = parse_container(inspect(**{field: value}))
    assert len(getattr(container, attribute)) == limit
    assert container.truncated and "kept" in container.truncated[0]


def test_long_strings_are_truncated_with_a_mark():
    container = parse_container(inspect(Name="/" + "n" * 100_000, Config={"Image": "i" * 100_000}))
    assert len(container.name) <= MAX_TEXT and container.name.endswith("…[truncated 97 KiB]")
    assert len(container.image) <= MAX_TEXT


def test_networks_and_the_engine_are_capped_too():
    network = parse_network({"Id": "n", "Name": "big", "Containers": {f"c{i}": {"Name": f"c{i}"} for i in range(20_000)}, "Options": {"o": "x" * MB}})
    assert len(network.containers) == 10_000 and network.truncated == ("containers: kept 10000 of 20000",)
    assert len(network.options["o"]) <= MAX_LABEL_VALUE
    engine = parse_engine({"Version": "v" * 10_000}, {"Warnings": ["w" * 10_000] * 1000})
    assert len(engine.warnings) == MAX_ITEMS and len(engine.warnings[0]) <= MAX_TEXT and len(engine.server_version) <= 64
    assert engine.truncated == ("Warnings: kept 256 of 1000",)


def test_a_truncated_value_says_how_much_was_cut():
    assert truncate("short", 10) == "short"
    assert truncate("é" * 100, 30) == "é" * 6 + "…[truncated 188 B]"
    assert len(truncate("x" * 5000, 100)) <= 100


def test_a_big_label_on_a_real_container_is_kept_bounded(engine):
    engine.container("labelled", labels={"blob": "y" * (2 * MB), **{f"extra.{i:04d}": "z" for i in range(400)}})
    container = snapshot_of(engine.url).container("labelled")
    assert container.labels["blob"].endswith("…[truncated 2.0 MiB]") and len(container.labels["blob"]) <= MAX_LABEL_VALUE
    assert len(container.labels) == MAX_LABELS
    assert container.truncated == (f"labels: kept {MAX_LABELS} of 401",)
