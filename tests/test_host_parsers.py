"""Pure parsers of host output, on text recorded from real hosts (tests/fixtures/host, tests/fixtures/firewall)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from posture.collector import listeners
from posture.collector.firewall import FirewallParseError, combine, parse_iptables_save, parse_nft_ruleset
from posture.collector.hostio import read_proc_net
from posture.collector.snapshot import HostSnapshot, Listener
from posture.rules.firewall import docker_user_restrictions, input_verdict

from .builders import container, host_state, recorded_firewall, snapshot
from .conftest import need

HOST = Path(__file__).parent / "fixtures" / "host"


def by_endpoint(found: tuple[Listener, ...]) -> dict[str, Listener]:
    return {f"{x.protocol}/{x.endpoint}": x for x in found}


# --- listeners ---------------------------------------------------------------------------


def test_ss_output_gives_address_port_protocol_and_process():
    found = by_endpoint(listeners.parse_ss((HOST / "ss-Hltnup.txt").read_text()))
    assert found["tcp/127.0.0.1:5432"].process == "postgres"
    assert found["tcp/0.0.0.0:18700"].process == "python3"
    assert found["tcp/[::1]:6379"].process == "redis-server"
    assert found["tcp/*:18701"].address == "*"  # a dual-stack socket on every address
    assert found["tcp/192.0.2.2:18702"].address == "192.0.2.2"
    assert found["tcp/0.0.0.0:2024"].process == ""  # not readable by the user who ran ss
    assert found["udp/0.0.0.0:18703"].protocol == "udp"
    assert "udp/[::1]:18704" in found
    assert "udp/127.0.0.1:40000" not in found  # ephemeral UDP: a client socket


def test_the_proc_tables_agree_with_ss_on_what_listens():
    from_ss = {k for k in by_endpoint(listeners.parse_ss((HOST / "ss-Hltnup.txt").read_text())) if not k.startswith("udp")}
    tables = listeners.split_tail((HOST / "proc-net.txt").read_text())
    assert set(tables) == {"tcp", "tcp6", "udp", "udp6"}
    from_proc = by_endpoint(listeners.parse_proc_files(tables))
    # ss says * for a dual-stack socket; the kernel table says ::.
    assert {k.replace("*", "[::]") for k in from_ss} <= set(from_proc)
    assert "udp/0.0.0.0:18703" in from_proc and "udp/[::1]:18704" in from_proc
    assert all(x.process == "" for x in from_proc.values())  # names come from /proc/PID/fd


def test_proc_tables_map_inodes_to_process_names_when_given():
    text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 4668 1 0 100 0 0 10 0\n"
    [found] = listeners.parse_proc_files({"tcp": text}, {"4668": "postgres"})
    assert (found.address, found.port, found.process) == ("127.0.0.1", 5432, "postgres")


def test_ipv4_mapped_addresses_read_as_ipv4():
    line = "   0: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 99 1 0"
    [found] = listeners.parse_proc_files({"tcp6": "  sl  local_address remote_address st\n" + line})
    assert found.address == "127.0.0.1" and found.port == 8080


@pytest.mark.parametrize(
    "text",
    ["not ss at all", "tcp LISTEN x y 127.0.0.1:5432 0.0.0.0:*", "tcp LISTEN 0 128 nonsense 0.0.0.0:*"],
)
def test_text_that_is_not_ss_output_is_refused(text):
    with pytest.raises(listeners.ListenerParseError):
        listeners.parse_ss(text)


def test_text_that_is_not_a_proc_table_is_refused():
    with pytest.raises(listeners.ListenerParseError, match="header"):
        listeners.parse_proc_net("hello", "tcp")
    with pytest.raises(listeners.ListenerParseError, match="no /proc/net section"):
        listeners.split_tail("tail: cannot open '/proc/net/tcp'")


def test_this_machines_proc_net_is_read_with_process_names(tmp_path):
    """The local reader on the live /proc: a listener the test opens is found with its name."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        found = by_endpoint(read_proc_net(Path("/proc")))
    assert found[f"tcp/127.0.0.1:{port}"].process.startswith("python")


# --- firewall ------------------------------------------------------------------------


def test_ufw_denies_by_default_and_docker_forwards_around_it():
    f = recorded_firewall("ufw-docker.iptables")
    assert f.frontends == ("ufw",) and f.input_default_deny and f.input_deny_by == "policy DROP of INPUT"
    assert input_verdict(f, "tcp", 22)[0] == "open"
    assert input_verdict(f, "tcp", 5432) == ("blocked", [])
    verdict, rules = input_verdict(f, "tcp", 8080)
    assert verdict == "partial" and rules[0].source == "10.0.0.0/8"
    assert {(r.ports, r.target) for r in f.docker_forwards} == {(("5432",), "172.17.0.2:5432"), (("8080",), "172.17.0.3:80"), (("8443",), "172.17.0.4:443")}
    assert f.docker_chains and docker_user_restrictions(f, "tcp", 5432, 5432) == []


def test_firewalld_on_iptables_rejects_by_its_final_rule():
    f = recorded_firewall("firewalld.iptables")
    assert f.frontends == ("firewalld",) and f.input_default_deny
    assert f.input_deny_by == "-A INPUT -j REJECT --reject-with icmp-host-prohibited"
    assert input_verdict(f, "tcp", 9090)[0] == "open" and input_verdict(f, "tcp", 3306)[0] == "blocked"


def test_firewalld_on_nftables_is_read_from_its_own_table():
    f = recorded_firewall("firewalld.nft")
    assert f.frontends == ("firewalld",) and f.input_default_deny and "(table inet firewalld)" in f.input_deny_by
    assert input_verdict(f, "tcp", 22)[0] == "open"
    # The docker zone accepts everything, but only on docker0: not from outside.
    verdict, rules = input_verdict(f, "tcp", 27017)
    assert verdict == "partial" and rules[0].in_interface == "docker0"
    assert [r.target for r in f.docker_forwards] == ["172.17.0.2:27017"]
    assert "counter packets" not in "".join(r.text for r in f.docker_forwards)  # counters dropped


def test_plain_input_drop_with_docker_user_rules_that_restrict():
    f = recorded_firewall("input-drop-docker-user.iptables")
    assert f.frontends == () and f.input_default_deny
    assert input_verdict(f, "tcp", 443)[0] == "open" and input_verdict(f, "tcp", 5432)[0] == "blocked"
    [by_origin] = docker_user_restrictions(f, "tcp", 5432, 5432)
    assert "--ctorigdstport 5432" in by_origin.text
    [by_source] = docker_user_restrictions(f, "tcp", 6379, 6379)
    assert by_source.source == "!192.168.1.0/24"
    assert docker_user_restrictions(f, "tcp", 80, 8080) == []  # the web port is not restricted


def test_plain_nftables_with_named_sets_and_multiline_elements():
    f = recorded_firewall("nftables-plain.nft")
    assert f.input_default_deny and f.input_policy == "drop"
    assert input_verdict(f, "tcp", 443)[0] == "open"
    verdict, rules = input_verdict(f, "tcp", 5432)
    assert verdict == "partial" and rules[0].source == "@admin_nets"
    assert input_verdict(f, "udp", 51820)[0] == "open" and input_verdict(f, "udp", 51821)[0] == "blocked"
    loopback = next(r for r in f.docker_forwards if r.ports == ("9200",))
    assert loopback.destination == "127.0.0.1"
    [restriction] = docker_user_restrictions(f, "tcp", 5432, 5432)
    assert restriction.orig_ports == ("5432",) and restriction.source == "!10.20.0.0/16"


def test_a_host_without_input_filtering_is_not_default_deny():
    f = recorded_firewall("open-host.iptables")
    assert not f.input_default_deny and input_verdict(f, "tcp", 6379)[0] == "open"


def test_iptables_and_nft_readings_combine():
    both = combine(recorded_firewall("ufw-docker.iptables"), recorded_firewall("nftables-plain.nft"))
    assert both.source == "iptables-save + nft list ruleset"
    assert both.input_default_deny and set(both.frontends) == {"ufw"}
    assert combine(None, None) is None


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_iptables_save, "-A INPUT -j DROP"),
        (parse_iptables_save, "*filter\nhello world\nCOMMIT"),
        (parse_nft_ruleset, "table inet filter {\n chain input {\n"),
        (parse_nft_ruleset, "}\n"),
        (parse_nft_ruleset, "accept\n"),
    ],
)
def test_text_that_is_not_a_ruleset_is_refused(parse, text):
    with pytest.raises(FirewallParseError):
        parse(text)


@pytest.mark.real
def test_the_live_hosts_iptables_save_is_read_read_only():
    """This machine's own firewall, read as Posture reads it (the firewall is not ours to change)."""
    if shutil.which("iptables-save") is None:
        need("iptables-save is not installed")
    result = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        need(f"iptables-save cannot run here: {result.stderr.strip()}")
    live = parse_iptables_save(result.stdout)
    assert live.source == "iptables-save"
    if shutil.which("nft") is not None:
        nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, timeout=30)
        if nft.returncode == 0:
            assert combine(live, parse_nft_ruleset(nft.stdout)) is not None


# --- the snapshot carries it all, and round-trips --------------------------------------


def test_host_state_round_trips_and_old_snapshots_still_decode():
    state = host_state(*listeners.parse_ss((HOST / "ss-Hltnup.txt").read_text()), firewall=recorded_firewall("ufw-docker.iptables"))
    snap = snapshot([container("web")], host=state)
    again = HostSnapshot.from_json(snap.to_json())
    assert again == snap and again.digest() == snap.digest()
    assert again.host.firewall.docker_forwards[0].ports == ("5432",)
    # A listener that goes away changes the digest: the poll stores a new snapshot.
    fewer = snapshot([container("web")], host=host_state(*state.listeners[1:], firewall=state.firewall))
    assert fewer.digest() != snap.digest()
    # Snapshots stored before these fields existed decode with their defaults.
    old = snap.to_dict()
    del old["host"]
    for network in old["networks"]:
        del network["gateways"]
    decoded = HostSnapshot.from_dict(old)
    assert decoded.host is None and decoded.networks[0].gateways == ()
