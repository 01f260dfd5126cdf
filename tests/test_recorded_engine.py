"""The collector's parser and the rules on answers recorded from a real engine
(``python -m tests.record_engine``): no engine needed, like DefectDojo's parsers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from posture.collector.parse import MalformedAnswer, build_snapshot, parse_container
from posture.collector.snapshot import Connection, HostSnapshot
from posture.rules import evaluate

FIXTURES = Path(__file__).parent / "fixtures" / "engine"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def snapshot(raw: dict, connection: Connection | None = None) -> HostSnapshot:
    return build_snapshot(
        collected_at="2026-11-28T10:00:00+00:00",
        connection=connection or Connection(scheme="unix", address="unix:///var/run/docker.sock"),
        version=raw["version"],
        info=raw["info"],
        networks=raw["networks"],
        containers=raw["containers"],
    )


def found(snap: HostSnapshot) -> set[tuple[str, str]]:
    return {(s.rule_id, s.subject_name) for s in evaluate(snap, host_name="recorded")}


def test_snapshot_round_trips_through_json():
    snap = snapshot(load("mixed-exposure"))
    assert HostSnapshot.from_json(snap.to_json()) == snap
    assert HostSnapshot.from_json(snap.to_json()).digest() == snap.digest()


def test_snapshot_is_immutable():
    snap = snapshot(load("mixed-exposure"))
    with pytest.raises(AttributeError):
        snap.containers = ()
    with pytest.raises(TypeError):
        snap.containers[0].labels["x"] = "y"


def test_mixed_exposure_findings():
    result = found(snapshot(load("mixed-exposure")))
    expected = {
        ("host-network", "hostnet"),
        ("host-network", "inherits"),
        ("capabilities-added", "caps"),
        ("host-pid", "pid-ipc"),
        ("host-ipc", "pid-ipc"),
        ("host-uts", "uts-user"),
        ("host-userns", "uts-user"),
        ("docker-socket-mounted", "sock"),
        ("port-all-interfaces", "web"),
        ("port-all-interfaces", "v6-only"),
        ("port-all-interfaces", "stopped-priv"),
        ("port-sensitive-service-exposed", "stopped-priv"),
        ("port-sensitive-service-exposed", "compose-db"),
        ("privileged", "stopped-priv"),
        ("default-bridge", "web"),
        ("icc-default-bridge", "bridge"),
        ("icc-user-bridge", "app-net"),
        ("userns-remap-off", "recorded"),
    }
    assert expected <= result
    assert ("port-all-interfaces", "loopback-only") not in result
    assert ("default-bridge", "loopback-only") not in result


def test_compose_labels_give_the_subject_key():
    snap = snapshot(load("mixed-exposure"))
    assert snap.container("compose-db").subject_key == "shop/cache"
    assert snap.container("web").subject_key == "web"


def test_exposed_daemon_findings_from_how_we_connected_and_what_it_said():
    raw = load("exposed-daemon")
    snap = snapshot(raw, Connection(scheme="tcp", address="tcp://127.0.0.1:23789"))
    result = {r for r, _ in found(snap)}
    assert {"daemon-tcp-no-tls", "insecure-registries", "swarm-mode", "overlay-unencrypted"} <= result
    overlays = {s.subject_name for s in evaluate(snap) if s.rule_id == "overlay-unencrypted"}
    assert overlays == {"plain-overlay"}


def test_daemon_positive_signals_silence_their_rules():
    raw = load("mixed-exposure")
    info = raw["info"]
    info["SecurityOptions"] = [*info["SecurityOptions"], "name=rootless"]
    info["Plugins"]["Authorization"] = ["opa-docker-authz"]
    bridge = next(n for n in raw["networks"] if n["Name"] == "bridge")
    bridge["Options"]["com.docker.network.bridge.enable_icc"] = "false"
    result = {r for r, _ in found(snapshot(raw))}
    assert not result & {"daemon-rootful", "no-authorization-plugin", "userns-remap-off", "icc-default-bridge"}


def test_tls_without_client_certificate_is_flagged():
    snap = snapshot(load("mixed-exposure"), Connection(scheme="tcp", address="tcp://10.0.0.5:2376", tls=True, client_cert=False))
    assert "daemon-tls-no-client-verify" in {r for r, _ in found(snap)}
    snap = snapshot(load("mixed-exposure"), Connection(scheme="tcp", address="tcp://10.0.0.5:2376", tls=True, client_cert=True))
    assert not {r for r, _ in found(snap)} & {"daemon-tls-no-client-verify", "daemon-tcp-no-tls"}


def test_missing_and_null_fields_are_tolerated():
    raw = copy.deepcopy(load("mixed-exposure")["containers"][0])
    for key in ("Mounts", "Config"):
        raw[key] = None
    raw["HostConfig"]["PortBindings"] = None
    raw["HostConfig"]["CapAdd"] = None
    container = parse_container(raw)
    assert container.port_bindings == () and container.cap_add == () and container.mounts == ()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("Id"), "no Id"),
        (lambda c: c["HostConfig"].update(PortBindings="80/tcp"), "PortBindings"),
        (lambda c: c["HostConfig"].update(PortBindings={"http/tcp": [{"HostPort": "80"}]}), "not a number"),
        (lambda c: c["HostConfig"].update(CapAdd="NET_ADMIN"), "CapAdd"),
        (lambda c: c.update(Mounts={"Source": "/"}), "Mounts"),
    ],
)
def test_malformed_answers_raise_a_clear_error(mutate, message):
    raw = copy.deepcopy(load("mixed-exposure")["containers"][0])
    mutate(raw)
    with pytest.raises(MalformedAnswer, match=message):
        parse_container(raw)
