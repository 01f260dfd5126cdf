"""The collector against real engines, and against engines that misbehave."""

from __future__ import annotations

import pytest

from posture.collector import parse_engine_url
from posture.collector.engine import EngineRejected, EngineUnreachable, collect
from posture.collector.parse import MalformedAnswer
from posture.collector.target import EngineTarget

from .fake_engines import serving, silent
from .observe import snapshot_of


def test_unchanged_containers_are_not_inspected_again(engine):
    engine.container("one")
    engine.container("two")
    engine.container("three", start=False)
    first = snapshot_of(engine.url)
    again = snapshot_of(engine.url, previous=first)
    assert first.inspects_reused == 0 and again.inspects_reused == 3
    assert again.api_calls == first.api_calls - 3
    assert again.digest() == first.digest()


def test_a_container_whose_state_changed_is_inspected_again(engine):
    engine.container("one")
    mover = engine.container("two")
    first = snapshot_of(engine.url)
    mover.stop(timeout=0)
    again = snapshot_of(engine.url, previous=first)
    assert again.inspects_reused == 1
    assert again.container("two").state == "exited" and again.container("two").running is False


def test_a_recreated_container_is_new_to_the_collector(engine):
    engine.container("web", ports={"80/tcp": 18380})
    first = snapshot_of(engine.url)
    engine.container("web", ports={"80/tcp": ("127.0.0.1", 18380)})
    again = snapshot_of(engine.url, previous=first)
    assert again.inspects_reused == 0
    assert again.container("web").port_bindings[0].host_ip == "127.0.0.1"


def test_the_docker_cli_environment_is_ignored(engine, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    monkeypatch.setenv("DOCKER_CONTEXT", "nonexistent")
    assert snapshot_of(engine.url).engine.server_version


def test_missing_socket_is_unreachable_with_a_clear_message(tmp_path):
    with pytest.raises(EngineUnreachable, match=r"cannot reach unix://.*: no such file or directory"):
        snapshot_of(f"unix://{tmp_path}/nope.sock")


def test_refused_tcp_port_is_unreachable():
    with pytest.raises(EngineUnreachable, match="connection refused"):
        snapshot_of("tcp://127.0.0.1:1", insecure=True)


def test_plain_tcp_is_refused_unless_marked_insecure():
    with pytest.raises(EngineRejected, match="mark the host insecure"):
        snapshot_of("tcp://127.0.0.1:2375")


def test_a_hung_engine_times_out(tmp_path):
    with silent(tmp_path / "hung.sock") as url, pytest.raises(EngineUnreachable, match="did not answer in time|timed out"):
        collect(EngineTarget(url=parse_engine_url(url), timeout=1))


def test_a_malformed_answer_is_reported_not_stored(tmp_path):
    answers = {
        "/version": {"Version": "99.0", "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux"},
        "/info": {"Name": "liar"},
        "/networks": [],
        "/containers/json": {"not": "a list"},
    }
    with serving(tmp_path / "liar.sock", answers) as url, pytest.raises(MalformedAnswer, match="not a list"):
        snapshot_of(url)


def test_non_json_answer_is_malformed(tmp_path):
    answers = {"/version": {"Version": "99.0", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "/info": b"<html>proxy error</html>"}
    with serving(tmp_path / "html.sock", answers) as url, pytest.raises(MalformedAnswer, match="not the Docker API"):
        snapshot_of(url)
