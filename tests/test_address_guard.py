"""The address guard: metadata and unspecified addresses are refused however they are
spelled, names are resolved when a poll connects, and the poll connects to the very
address that was checked (TLS and ssh still verify the registered name)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from posture.collector import InvalidEngineURL, parse_engine_url
from posture.collector.address import resolve_and_check
from posture.collector.budget import Budget
from posture.collector.engine import collect, probe
from posture.collector.errors import EngineRejected, EngineUnreachable
from posture.collector.target import EngineTarget

from .fake_engines import EMPTY_ENGINE, raw_engine

METADATA_SPELLINGS = [
    "2852039166",  # decimal
    "0xa9fea9fe",  # hex
    "0251.0376.0251.0376",  # octal
    "0xa9.0xfe.0xa9.0xfe",
    "169.254.43518",  # short forms
    "169.16689662",
    "[::ffff:169.254.169.254]",  # IPv4-mapped
    "[::ffff:a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64
    "[64:ff9b:1:a9fe:a9:fe00::]",  # NAT64, local-use /48 layout
    "[2002:a9fe:a9fe::1]",  # 6to4
    "[::a9fe:a9fe]",  # IPv4-compatible
    "100.100.100.200",  # Alibaba Cloud metadata
    "[fd00:ec2::254]",  # AWS metadata over IPv6
    "168.63.129.16",  # Azure WireServer
]


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
@pytest.mark.parametrize("scheme", ["tcp", "ssh"])
def test_metadata_addresses_are_refused_however_spelled(scheme, host):
    with pytest.raises(InvalidEngineURL, match="link-local, metadata or unspecified"):
        parse_engine_url(f"{scheme}://{host}:2375")


@pytest.mark.parametrize("host", ["0", "0.0.0.0", "0x0", "000.0.0.0", "[::]", "[::ffff:0.0.0.0]", "224.0.0.1", "255.255.255.255", "[ff02::1]"])
def test_unspecified_and_multicast_addresses_are_refused(host):
    with pytest.raises(InvalidEngineURL, match="link-local, metadata or unspecified"):
        parse_engine_url(f"tcp://{host}:2375")


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("tcp://2130706433:2375", "tcp://127.0.0.1:2375"),
        ("tcp://0x7f.1:2375", "tcp://127.0.0.1:2375"),
        ("tcp://012.1.2.3:2376", "tcp://10.1.2.3:2376"),
        ("tcp://[::ffff:10.1.2.3]:2376", "tcp://[::ffff:a01:203]:2376"),
        ("tcp://[::1]:2375", "tcp://[::1]:2375"),
        ("tcp://localhost:2375", "tcp://localhost:2375"),
        ("tcp://1e100.example:2376", "tcp://1e100.example:2376"),
        ("ssh://ops@2130706433:2222", "ssh://ops@127.0.0.1:2222"),
    ],
)
def test_loopback_private_and_names_stay_allowed_in_one_spelling(url, normalised):
    assert str(parse_engine_url(url)) == normalised


def test_names_are_resolved_and_every_answer_checked():
    assert resolve_and_check("engine.test", 2375, lambda h, p: ["10.0.0.5", "10.0.0.5", "::1"]) == ["10.0.0.5", "::1"]
    for answers in (["10.0.0.5", "169.254.169.254"], ["::ffff:169.254.169.254"], ["64:ff9b::a9fe:a9fe"], ["0.0.0.0"], ["not-an-address"]):
        with pytest.raises(ValueError, match="engine.test resolve"):
            resolve_and_check("engine.test", 2375, lambda h, p, a=answers: a)


class Resolver:
    """A resolver the test controls: no DNS involved."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers


def name_target(engine_url: str, name: str = "engine.test", **opts: object) -> EngineTarget:
    port = engine_url.rsplit(":", 1)[1]
    return EngineTarget(url=parse_engine_url(f"tcp://{name}:{port}"), insecure=True, timeout=5, **opts)


def test_a_name_is_resolved_at_each_poll_and_the_poll_connects_to_the_checked_address(monkeypatch):
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def spy(host: object, *args: object, **kwargs: object) -> object:
        looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    resolver = Resolver("127.0.0.1")
    with raw_engine(EMPTY_ENGINE) as engine:
        target = name_target(engine.url)
        for _ in range(2):
            assert collect(target, budget=Budget(20), resolver=resolver).engine.name == "fake"
    assert resolver.asked == [("engine.test", target.url.port)] * 2
    assert "engine.test" not in looked_up  # never a second, unchecked resolution


def test_a_name_that_resolves_to_a_metadata_address_is_refused_before_any_connection():
    with raw_engine(EMPTY_ENGINE) as engine:
        for answers in (["127.0.0.1", "169.254.169.254"], ["::ffff:a9fe:a9fe"]):
            with pytest.raises(EngineRejected, match=r"engine.test resolves to .*link-local, metadata") as caught:
                collect(name_target(engine.url), budget=Budget(20), resolver=Resolver(*answers))
            assert not caught.value.transient
        assert engine.requests == []


def test_a_name_that_does_not_resolve_is_transient():
    def fails(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(EngineUnreachable, match="cannot resolve engine.test: Name or service not known") as caught:
        probe(name_target("tcp://x:1"), budget=Budget.for_probe(5), resolver=fails)
    assert caught.value.transient


def test_the_next_checked_address_is_tried_when_one_refuses():
    with raw_engine(EMPTY_ENGINE) as engine:
        assert probe(name_target(engine.url), budget=Budget.for_probe(5), resolver=Resolver("::1", "127.0.0.1")).startswith("Docker 99.0")


def tls_target(engine, name: str) -> EngineTarget:
    client = engine.ca.issue("posture-client", server=False)
    port = engine.tcp_url.rsplit(":", 1)[1]
    return EngineTarget(url=parse_engine_url(f"tcp://{name}:{port}"), tls_ca=engine.ca.path, tls_cert=client.cert, tls_key=client.key, timeout=10)


def test_tls_verifies_the_registered_name_while_connecting_to_the_checked_address(tls_engine):
    # The engine's certificate names localhost and 127.0.0.1.
    assert probe(tls_target(tls_engine, "localhost"), budget=Budget.for_probe(10), resolver=Resolver("127.0.0.1")).startswith("Docker ")
    # Same address, a name the certificate does not carry: refused, so the name is what is verified.
    with pytest.raises(EngineRejected, match="TLS handshake with tcp://engine.test:.* failed: .*(match|mismatch)"):
        probe(tls_target(tls_engine, "engine.test"), budget=Budget.for_probe(10), resolver=Resolver("127.0.0.1"))


def test_ssh_connects_to_the_checked_address_and_pins_the_key_under_the_registered_name(engine, sshd, tmp_path: Path):
    known = tmp_path / "known_hosts"
    known.touch()
    url = parse_engine_url(f"ssh://root@engine.test:{sshd.port}{engine.socket}")
    target = EngineTarget(url=url, ssh_key=sshd.client_key, ssh_known_hosts=known, timeout=10)
    resolver = Resolver("127.0.0.1")
    assert probe(target, budget=Budget.for_probe(15), resolver=resolver).startswith("Docker ")
    pinned = known.read_text().split()
    assert pinned[0] == f"[engine.test]:{sshd.port}" and pinned[1] == "ssh-ed25519"
    assert resolver.asked == [("engine.test", sshd.port)]
    # Another key under that name is refused, whatever address it answers from.
    known.write_text(f"[engine.test]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN1cnByaXNlLXRoaXMtaXMtbm90LXRoZS1rZXkxMjM0\n")
    with pytest.raises(EngineRejected, match="ssh to .* failed"):
        probe(target, budget=Budget.for_probe(15), resolver=resolver)
