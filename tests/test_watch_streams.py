"""One engine's event stream, as the watcher opens it: real engines over a unix socket,
tcp with TLS client certificates and ssh; fake ones only for what a real engine will not
do (answer with garbage, without end, or with a redirect)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command

from posture.collector import EngineTarget, MalformedAnswer, parse_engine_url
from posture.collector.engine import EngineRejected, EngineUnreachable
from posture.models import DockerHost, PollStatus
from posture.polling import credentials, poll
from posture.watch import stream as stream_module
from posture.watch.events import Event
from posture.watch.stream import engine_addresses, open_stream

pytestmark = pytest.mark.slow


async def _collect(target: EngineTarget, after: int | None, until: Callable[[list[Event]], bool], trigger: Callable[[], object] | None) -> list[Event]:
    seen: list[Event] = []
    async with asyncio.timeout(30), open_stream(target, after) as events:
        if trigger is not None:
            await asyncio.to_thread(trigger)
        async for event in events.events():
            seen.append(event)
            if until(seen):
                return seen
    return seen


def watch_for(
    target: EngineTarget, until: Callable[[list[Event]], bool], *, after: int | None = None, trigger: Callable[[], object] | None = None
) -> list[Event]:
    return asyncio.run(_collect(target, after, until, trigger))


def started(name: str) -> Callable[[list[Event]], bool]:
    return lambda seen: any(e.action == "start" and e.subject == name for e in seen)


def test_a_unix_engine_streams_container_and_network_events(engine):
    target = EngineTarget(url=parse_engine_url(engine.url))
    seen = watch_for(target, started("edge"), trigger=lambda: engine.container("edge", network_mode="host"))
    kinds = [(e.type, e.action) for e in seen]
    assert ("container", "create") in kinds and ("network", "connect") in kinds
    assert all(e.relevant for e in seen)
    assert seen[0].time_nano > 0


def test_events_from_while_nobody_listened_are_replayed_from_since(engine):
    before = time.time_ns()
    engine.container("while-away")  # nobody is subscribed
    target = EngineTarget(url=parse_engine_url(engine.url))
    seen = watch_for(target, started("while-away"), after=before)
    assert [e.action for e in seen if e.type == "container"] == ["create", "start"]
    # And strictly after: resuming from the last event seen does not repeat it.
    again = watch_for(target, lambda s: True, after=seen[-1].time_nano, trigger=lambda: engine.container("next", start=False))
    assert again[0].subject == "next"


@pytest.mark.django_db
def test_a_tls_engine_is_watched_with_the_hosts_client_certificate(tls_engine):
    client = tls_engine.ca.issue("watcher-client", server=False)
    opts = ["--tls-ca", str(tls_engine.ca.path), "--tls-cert", str(client.cert), "--tls-key", str(client.key)]
    call_command("hosts", "add", "tls-watch", tls_engine.tcp_url, *opts, stdout=io.StringIO())
    with credentials(DockerHost.objects.get(name="tls-watch")) as creds:
        seen = watch_for(creds.target, started("tls-edge"), trigger=lambda: tls_engine.container("tls-edge", network_mode="host"))
    assert ("container", "start") in [(e.type, e.action) for e in seen]


@pytest.mark.django_db
def test_a_tls_engine_refuses_a_watcher_without_a_client_certificate(tls_engine):
    call_command("hosts", "add", "tls-nocert", tls_engine.tcp_url, "--tls-ca", str(tls_engine.ca.path), stdout=io.StringIO())
    with credentials(DockerHost.objects.get(name="tls-nocert")) as creds, pytest.raises(EngineRejected, match="TLS"):
        watch_for(creds.target, lambda s: True)


@pytest.mark.django_db
def test_an_ssh_engine_is_watched_through_the_collectors_tunnel_with_the_pinned_key(engine, sshd):
    url = f"ssh://root@127.0.0.1:{sshd.port}{engine.socket}"
    call_command("hosts", "add", "ssh-watch", url, "--ssh-key", str(sshd.client_key), stdout=io.StringIO())
    host = DockerHost.objects.get(name="ssh-watch")
    assert poll(host).status == PollStatus.OK  # pins the host key
    host.refresh_from_db()
    with credentials(host) as creds:
        assert "ssh-ed25519" in creds.target.ssh_known_hosts.read_text()
        seen = watch_for(creds.target, started("ssh-edge"), trigger=lambda: engine.container("ssh-edge"))
    assert seen[-1].subject == "ssh-edge"


def test_plain_tcp_needs_the_insecure_flag():
    target = EngineTarget(url=parse_engine_url("tcp://127.0.0.1:2375"))
    with pytest.raises(EngineRejected, match="insecure"):
        watch_for(target, lambda s: True)


def test_a_name_that_resolves_to_a_metadata_address_is_refused(monkeypatch):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 2376)), (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 2376))]
    monkeypatch.setattr(stream_module.socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(EngineRejected, match="169.254.169.254"):
        engine_addresses("engine.example.com", 2376)


def test_an_engine_that_is_not_there_is_unreachable(tmp_path):
    target = EngineTarget(url=parse_engine_url(f"unix://{tmp_path}/absent.sock"))
    with pytest.raises(EngineUnreachable, match="cannot reach"):
        watch_for(target, lambda s: True)


# --- hostile engines ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fake_engine(path: Path, answer: bytes, body: Callable[[asyncio.StreamWriter], object] | None = None):
    """Answers every request with ``answer`` (status line and headers), then ``body``."""
    sent = {"bytes": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        # Cancelled when the test's loop ends: a fake engine has nothing to clean up.
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            if body is not None:
                await body(writer, sent)
            await writer.drain()
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    async with server:
        yield sent


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"


async def _against(path: Path, answer: bytes, body=None) -> tuple[BaseException | None, dict]:
    target = EngineTarget(url=parse_engine_url(f"unix://{path}"), timeout=5)
    async with fake_engine(path, answer, body) as sent:
        try:
            async with asyncio.timeout(30), open_stream(target, None) as events:
                async for _ in events.events():
                    pass
        except Exception as exc:
            return exc, sent
    return None, sent


def test_an_endless_line_is_cut_off_without_reading_it_all(tmp_path):
    async def endless(writer, sent):
        chunk = b"a" * 65536
        for _ in range(1600):  # 100 MiB if anyone read it all
            writer.write(chunk)
            await writer.drain()
            sent["bytes"] += len(chunk)

    error, sent = asyncio.run(_against(tmp_path / "e.sock", STREAM_HEAD, endless))
    assert isinstance(error, MalformedAnswer) and "more than 64 KiB" in str(error)
    assert sent["bytes"] < 8 * 1024 * 1024  # what the socket buffers took before the reader stopped


def test_a_line_that_is_not_an_event_is_refused(tmp_path):
    async def garbage(writer, sent):
        writer.write(b'{"Type": "container", "Action": "start", "timeNano": 5}\n<html>hello</html>\n')

    error, _ = asyncio.run(_against(tmp_path / "g.sock", STREAM_HEAD, garbage))
    assert isinstance(error, MalformedAnswer) and "not an engine event" in str(error)


def test_an_error_answer_is_reported_with_the_engines_message(tmp_path):
    body = json.dumps({"message": "daemon is shutting down"}).encode()
    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    error, _ = asyncio.run(_against(tmp_path / "x.sock", head))
    assert isinstance(error, EngineUnreachable) and "500" in str(error) and "shutting down" in str(error)


def test_a_redirect_is_not_followed(tmp_path):
    head = b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n"
    error, _ = asyncio.run(_against(tmp_path / "r.sock", head))
    assert isinstance(error, EngineRejected) and "302" in str(error)


def test_an_engine_that_never_answers_times_out(tmp_path):
    async def silence(writer, sent):
        await asyncio.sleep(60)

    error, _ = asyncio.run(_against(tmp_path / "s.sock", b"", silence))
    assert isinstance(error, EngineUnreachable) and "in time" in str(error)
