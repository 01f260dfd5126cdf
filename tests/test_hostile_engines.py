"""Engines that answer as an attacker would: redirects, endless or huge answers, a byte
at a time, garbage. Each is a fault a real dockerd will not produce, served on 127.0.0.1
or a unix socket; the collector must end every poll with a clear, classified error,
within its deadline and its memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from posture.collector import parse_engine_url
from posture.collector.budget import Budget
from posture.collector.engine import collect, probe
from posture.collector.errors import (
    AnswerTooLarge,
    DeadlineExceeded,
    EngineError,
    EngineRedirected,
    EngineRejected,
    EngineUnreachable,
    MalformedAnswer,
)
from posture.collector.target import EngineTarget

from .fake_engines import EMPTY_ENGINE, answer, dribble, endless_chunks, head, listener, raw_engine
from .waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def target(url: str, timeout: float = 5) -> EngineTarget:
    return EngineTarget(url=parse_engine_url(url), insecure=True, timeout=timeout)


def poll(url: str, seconds: float = 20, timeout: float = 5, **limits: int) -> object:
    return collect(target(url, timeout), budget=Budget(seconds, **limits))


# --- 1. redirects ------------------------------------------------------------------


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect", "308 Permanent Redirect"])
def test_a_redirect_is_refused_and_never_followed(status):
    with listener() as internal:
        location = f"http://127.0.0.1:{internal.port}/latest/meta-data/"
        routes = {**EMPTY_ENGINE, "/info": lambda conn: conn.sendall(head(status, Location=location, Content_Length="0"))}
        with raw_engine(routes) as engine, pytest.raises(EngineRedirected) as caught:
            poll(engine.url)
    assert not caught.value.transient and isinstance(caught.value, EngineRejected)
    message = str(caught.value)
    assert status.split()[0] in message and "never follows redirects" in message and "/info" in message
    assert internal.connections == 0 and internal.received == b""
    assert engine.requests == ["/version", "/info"]


def test_a_redirect_on_the_same_socket_is_refused_too(tmp_path):
    """A relative Location stays on the engine's socket; it is refused all the same."""
    routes = {**EMPTY_ENGINE, "/version": lambda conn: conn.sendall(head("302 Found", Location="/v1.41/secrets", Content_Length="0"))}
    with raw_engine(routes, unix=tmp_path / "e.sock") as engine, pytest.raises(EngineRedirected, match="302"):
        probe(target(engine.url), budget=Budget.for_probe(10))
    assert engine.requests == ["/version"]


# --- 2. bounded answers ------------------------------------------------------------


RSS_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from posture.collector import parse_engine_url
    from posture.collector.budget import Budget
    from posture.collector.engine import collect
    from posture.collector.target import EngineTarget

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        collect(EngineTarget(url=parse_engine_url(sys.argv[1]), insecure=True, timeout=10), budget=Budget(60))
        outcome = "ok"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "growth_kib": after - before}))
    """
)


def peak_growth_of_a_poll(url: str) -> dict:
    """Poll ``url`` in a child process and report its outcome and peak RSS growth: the
    worker's memory is what the limits protect, so measure a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", RSS_PROBE, url], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_endless_chunked_answer_stops_at_the_answer_limit_in_bounded_memory(tmp_path):
    routes = {**EMPTY_ENGINE, "/containers/json": endless_chunks()}
    with raw_engine(routes, unix=tmp_path / "endless.sock") as engine:
        result = peak_growth_of_a_poll(engine.url)
    assert result["outcome"].startswith("AnswerTooLarge: the engine's answer to /containers/json passed the 16 MiB limit per answer")
    # 16 MiB kept at most, plus buffers; unbounded, the child reads the 512 MiB the engine sends.
    assert result["growth_kib"] < 80 * 1024, result


def test_a_100_mb_container_list_fails_fast_in_bounded_memory(tmp_path):
    item = json.dumps({"Id": "a" * 64, "Names": ["/x"], "Labels": {"k": "v" * 1000}}).encode()
    body_size = 100 * 1024 * 1024

    def huge_list(conn: socket.socket) -> None:
        count = body_size // (len(item) + 1)
        conn.sendall(head(Transfer_Encoding="chunked"))
        for i in range(count):
            piece = (b"[" if i == 0 else b",") + item + (b"]" if i == count - 1 else b"")
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sendall(b"0\r\n\r\n")

    with raw_engine({**EMPTY_ENGINE, "/containers/json": huge_list}, unix=tmp_path / "huge.sock") as engine:
        result = peak_growth_of_a_poll(engine.url)
    assert "AnswerTooLarge" in result["outcome"] and "16 MiB limit per answer" in result["outcome"]
    assert result["growth_kib"] < 80 * 1024, result


def test_an_announced_oversize_answer_is_refused_before_it_is_read(tmp_path):
    def announces(conn: socket.socket) -> None:
        conn.sendall(head(Content_Length=str(10**12)) + b"[")

    with raw_engine({**EMPTY_ENGINE, "/info": announces}, unix=tmp_path / "e.sock") as engine, pytest.raises(AnswerTooLarge) as caught:
        poll(engine.url)
    assert "announced 931 GiB, past the 16 MiB limit per answer" in str(caught.value)
    assert not caught.value.transient


def test_the_answers_of_one_poll_together_have_a_limit(tmp_path):
    containers = [{"Id": f"{i:064x}"} for i in range(40)]
    inspect = {"Id": "x", "Name": "/c", "Config": {"Labels": {"filler": "x" * 60_000}}}
    routes = {**EMPTY_ENGINE, "/containers/json": containers, "/containers/": inspect}
    with raw_engine(routes, unix=tmp_path / "e.sock") as engine:
        assert len(poll(engine.url, max_poll_bytes=4 * 1024 * 1024).containers) == 40
        with pytest.raises(AnswerTooLarge, match="passed the 1.0 MiB limit per poll"):
            poll(engine.url, max_poll_bytes=1024 * 1024)


def test_compressed_answers_are_refused(tmp_path):
    def gzipped(conn: socket.socket) -> None:
        conn.sendall(head(Content_Encoding="gzip", Content_Length="4") + b"\x1f\x8b\x08\x00")

    with raw_engine({**EMPTY_ENGINE, "/info": gzipped}, unix=tmp_path / "e.sock") as engine, pytest.raises(MalformedAnswer, match="gzip-encoded"):
        poll(engine.url)


# --- 3. one deadline ---------------------------------------------------------------


def test_an_engine_dribbling_its_body_is_cut_at_the_poll_deadline(tmp_path):
    slow = dribble(head(Content_Length="1000") + b"[", every=0.2)
    with raw_engine({**EMPTY_ENGINE, "/containers/json": slow}, unix=tmp_path / "slow.sock") as engine:
        with pytest.raises(DeadlineExceeded) as caught:
            poll(engine.url, seconds=1.2, timeout=0.8)
        # The per-read timeout (0.8 s) never tripped; the deadline hung up on the engine.
        wait_for(engine.cut.is_set, timeout=10, what="the engine to see its connection shut")
    assert caught.value.transient
    assert str(caught.value) == "the engine did not finish answering within the 1.2 s poll deadline"


def test_an_engine_dribbling_its_headers_is_cut_at_the_deadline(tmp_path):
    slow = dribble(b"HTTP/1.1 200 OK\r\nX-Slow: ", byte=b"z", every=0.2)
    with raw_engine({**EMPTY_ENGINE, "/info": slow}, unix=tmp_path / "slow.sock") as engine, pytest.raises(DeadlineExceeded, match=r"1\.2 s poll deadline"):
        poll(engine.url, seconds=1.2, timeout=0.8)


def test_inspects_in_the_pool_stop_at_the_deadline_and_leave_no_thread_behind(tmp_path):
    containers = [{"Id": f"{i:064x}"} for i in range(6)]
    slow = dribble(head(Content_Length="100000") + b"{", every=0.2)
    routes = {**EMPTY_ENGINE, "/containers/json": containers, "/containers/": slow}
    with raw_engine(routes, unix=tmp_path / "slow.sock") as engine:
        with pytest.raises(DeadlineExceeded, match=r"1\.2 s poll deadline"):
            collect(target(engine.url, timeout=0.8), budget=Budget(1.2), workers=3)

        def inspect_threads() -> list[str]:
            return [t.name for t in threading.enumerate() if t.name.startswith("inspect")]

        wait_for(lambda: not inspect_threads(), timeout=10, what="the inspect threads to end")
    # Three ran and were cut; the other three were never sent.
    assert len([p for p in engine.requests if p.startswith("/containers/0")]) == 3


def test_the_connection_test_has_its_own_deadline(tmp_path):
    slow = dribble(head(Content_Length="1000") + b"{", every=0.2)
    with raw_engine({"/version": slow}, unix=tmp_path / "slow.sock") as engine, pytest.raises(DeadlineExceeded) as caught:
        probe(target(engine.url, timeout=30), budget=Budget.for_probe(1))
    assert str(caught.value) == "the engine did not finish answering within the 1 s connection test deadline"


def test_the_ssh_tunnel_gives_up_at_the_deadline(tmp_path, sshd):
    with socket.socket() as mute:  # accepts, never sends a banner
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        url = f"ssh://root@127.0.0.1:{mute.getsockname()[1]}"
        ssh = EngineTarget(url=parse_engine_url(url), ssh_key=sshd.client_key, ssh_known_hosts=tmp_path / "known_hosts", timeout=60)
        with pytest.raises(DeadlineExceeded, match="2 s connection test deadline"):
            probe(ssh, budget=Budget.for_probe(2))


# --- 4. malformed answers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("/version", b"<html>proxy error</html>", "not the Docker API: Expecting value"),
        ("/info", b"\xff\xfe\x00garbage", "not the Docker API"),
        ("/containers/json", b"[" * 5000 + b"]" * 5000, "nests too deeply"),
        ("/containers/json", b"[" + b"{}," * 400_000 + b"{}]", "packs 400002 JSON objects and arrays into 1.1 MiB"),
        ("/containers/json", b"[1, 2, 3]", "the container list holds 1, which is not a container"),
        ("/containers/json", b'[{"Id": "../../secrets"}]', "which is not a container with an Id"),
        ("/networks", b'["bridge"]', "the network list holds 'bridge'"),
        ("/containers/json", b'{"not": "a list"}', "network or container list is not a list"),
        ("/version", b'{"ApiVersion": ["1.41"]}', "has no ApiVersion"),
        ("/version", b'{"ApiVersion": "banana"}', "API version 'banana'"),
        ("/info", b'{"Swarm": [1]}', "Swarm: expected an object"),
    ],
)
def test_malformed_answers_are_permanent_and_say_so(tmp_path, route, body, message):
    with raw_engine({**EMPTY_ENGINE, route: body}, unix=tmp_path / "e.sock") as engine, pytest.raises(MalformedAnswer) as caught:
        poll(engine.url)
    assert message in str(caught.value)
    assert not caught.value.transient


def test_a_malformed_inspect_answer_is_malformed(tmp_path):
    routes = {**EMPTY_ENGINE, "/containers/json": [{"Id": "a" * 64}], "/containers/": {"Id": "a", "Mounts": [None, 3]}}
    with raw_engine(routes, unix=tmp_path / "e.sock") as engine, pytest.raises(MalformedAnswer, match="Mounts"):
        poll(engine.url)


def test_an_answer_that_is_not_http_at_all_is_malformed(tmp_path):
    routes = {"/": lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")}
    with raw_engine(routes, unix=tmp_path / "e.sock") as engine, pytest.raises(MalformedAnswer, match="does not answer in HTTP"):
        poll(engine.url)


@pytest.mark.parametrize(
    "cut_off",
    [
        head(Content_Length="1000") + b'[{"Id": "abc',
        head(Transfer_Encoding="chunked") + b"400\r\n[{",
    ],
    ids=["content-length", "chunked"],
)
def test_a_cut_off_answer_is_transient_with_a_plain_message(tmp_path, cut_off):
    routes = {**EMPTY_ENGINE, "/containers/json": lambda conn: conn.sendall(cut_off)}
    with raw_engine(routes, unix=tmp_path / "e.sock") as engine, pytest.raises(EngineUnreachable) as caught:
        poll(engine.url)
    assert caught.value.transient
    assert str(caught.value) == "the engine closed the connection before its answer was complete (/containers/json)"


def test_an_engine_that_hangs_up_without_answering_is_transient(tmp_path):
    with raw_engine({**EMPTY_ENGINE, "/info": lambda conn: None}, unix=tmp_path / "e.sock") as engine, pytest.raises(EngineUnreachable) as caught:
        poll(engine.url)
    assert "closed the connection without answering" in str(caught.value)


def test_engine_error_bodies_are_bounded_and_printable(tmp_path):
    body = json.dumps({"message": "\x1b]0;owned\x07\x1b[2J" + "x" * 1_000_000}).encode()
    routes = {**EMPTY_ENGINE, "/info": answer(body, "500 Internal Server Error")}
    with raw_engine(routes, unix=tmp_path / "e.sock") as engine, pytest.raises(EngineUnreachable) as caught:
        poll(engine.url)
    message = str(caught.value)
    assert "answered /info with 500" in message and "…[truncated" in message
    assert len(message) < 500 and "\x1b" not in message and "\x07" not in message


def test_anything_else_that_goes_wrong_is_still_an_engine_error_naming_its_cause(tmp_path, monkeypatch):
    import posture.collector.engine as engine_module

    def explode(**kwargs: object) -> None:
        raise ZeroDivisionError("a parser bug or a surprise")

    monkeypatch.setattr(engine_module, "build_snapshot", explode)
    with raw_engine(EMPTY_ENGINE, unix=tmp_path / "e.sock") as engine, pytest.raises((EngineError, MalformedAnswer)) as caught:
        poll(engine.url)
    assert "ZeroDivisionError: a parser bug or a surprise" in str(caught.value)


def test_the_workers_own_time_limit_is_not_mistaken_for_an_engine_error(tmp_path, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    import posture.collector.engine as engine_module

    def interrupted(**kwargs: object) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(engine_module, "build_snapshot", interrupted)
    with raw_engine(EMPTY_ENGINE, unix=tmp_path / "e.sock") as engine, pytest.raises(SoftTimeLimitExceeded):
        poll(engine.url)
