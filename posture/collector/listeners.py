"""The host's listening sockets from ``ss -Hltnup`` or ``/proc/net/{tcp,tcp6,udp,udp6}``: pure parsers.

Tested on recorded text. Both give address, port and protocol; ``ss`` adds the process
name where the reading user may see it, ``/proc/net`` gives a socket inode that the
local reader maps to a process through ``/proc/PID/fd``.

UDP sockets on ports of the local ephemeral range are left out: they are the client
ends of resolvers and the like, come and go between polls, and nobody connects to them.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable, Mapping

from .snapshot import Listener

EPHEMERAL = range(32768, 61000)  # Linux's default ip_local_port_range
_PROCESS = re.compile(r'\(\("((?:[^"\\]|\\.)*)",pid=(\d+)')
# /proc/net/tcp: 0A is LISTEN. /proc/net/udp: 07 (CLOSE) is a bound, unconnected socket.
_LISTENING = {"tcp": "0A", "udp": "07"}


class ListenerParseError(ValueError):
    """The text is not what ``ss`` or ``/proc/net`` print."""


def _split_endpoint(text: str) -> tuple[str, int]:
    """``127.0.0.1:5432``, ``[::1]:6379``, ``*:22``, ``127.0.0.53%lo:53``, ``:::22`` → address, port."""
    address, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ListenerParseError(f"{text!r} is not ADDRESS:PORT")
    address = address.strip("[]").split("%", 1)[0]
    if address in ("*", ""):
        return "*", int(port)
    try:
        return _canonical(ipaddress.ip_address(address)), int(port)
    except ValueError:
        raise ListenerParseError(f"{text!r}: {address!r} is not an IP address") from None


def _canonical(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4-mapped IPv6 address is its IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _keep(listener: Listener) -> bool:
    return not (listener.protocol == "udp" and listener.port in EPHEMERAL)


def normalise(listeners: Iterable[Listener]) -> tuple[Listener, ...]:
    """One entry per address, port and protocol (worker processes share sockets), sorted."""
    unique: dict[tuple[str, int, str], Listener] = {}
    for item in listeners:
        if not _keep(item):
            continue
        key = (item.address, item.port, item.protocol)
        kept = unique.get(key)
        if kept is None or (not kept.process and item.process):
            unique[key] = item
    return tuple(sorted(unique.values(), key=lambda x: (x.protocol, x.port, x.address)))


def parse_ss(text: str) -> tuple[Listener, ...]:
    """``ss -Hltnup`` output: ``tcp LISTEN 0 4096 127.0.0.1:5432 0.0.0.0:* users:(("postgres",pid=1,fd=5))``."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        # With both -t and -u, ss prints the protocol first; with one, it may leave it out.
        if fields[0] in ("tcp", "udp"):
            protocol, fields = fields[0], fields[1:]
        else:
            protocol = "udp" if fields[0] == "UNCONN" else "tcp"
        if len(fields) < 5 or not fields[1].isdigit() or not fields[2].isdigit():
            raise ListenerParseError(f"line {number} is not ss output: {line[:120]!r}")
        state, local = fields[0], fields[3]
        if state not in ("LISTEN", "UNCONN"):
            continue
        address, port = _split_endpoint(local)
        process = _PROCESS.search(line)
        found.append(Listener(address=address, port=port, protocol=protocol, process=process.group(1) if process else ""))
    return normalise(found)


def _hex_address(text: str) -> str:
    """Kernel hex: IPv4 as one native-endian 32-bit word, IPv6 as four. Linux hosts that
    run Docker are little-endian (x86-64, arm64), which is what this decodes."""
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(struct.pack("<I", *struct.unpack(">I", raw))))
    if len(raw) == 16:
        return _canonical(ipaddress.IPv6Address(struct.pack("<4I", *struct.unpack(">4I", raw))))
    raise ListenerParseError(f"{text!r} is not a kernel socket address")


def parse_proc_net(text: str, protocol: str) -> list[tuple[Listener, str]]:
    """One ``/proc/net/tcp`` (or tcp6, udp, udp6) file → listeners with their socket inode."""
    if protocol not in _LISTENING:
        raise ListenerParseError(f"unknown protocol {protocol!r}")
    lines = text.splitlines()
    if not lines or not lines[0].split()[:2] == ["sl", "local_address"]:
        raise ListenerParseError("not a /proc/net socket table (no sl local_address header)")
    found = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 10 or ":" not in fields[1]:
            raise ListenerParseError(f"line {number} of /proc/net/{protocol}: {line[:120]!r}")
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state != _LISTENING[protocol]:
            continue
        if protocol == "udp" and remote.split(":")[1] != "0000":
            continue  # a connected UDP socket is a client
        hex_address, _, hex_port = local.partition(":")
        try:
            address = _hex_address(hex_address)
            port = int(hex_port, 16)
        except ValueError:
            raise ListenerParseError(f"line {number} of /proc/net/{protocol}: bad address {local!r}") from None
        found.append((Listener(address=address, port=port, protocol=protocol), inode))
    return found


def parse_proc_files(files: Mapping[str, str], processes: Mapping[str, str] | None = None) -> tuple[Listener, ...]:
    """``{"tcp": text, "tcp6": text, ...}`` plus an inode → process name map."""
    processes = processes or {}
    found = []
    for name, text in files.items():
        protocol = name.rstrip("6")
        for listener, inode in parse_proc_net(text, protocol):
            process = processes.get(inode, "")
            found.append(Listener(address=listener.address, port=listener.port, protocol=protocol, process=process))
    return normalise(found)


def split_tail(text: str) -> dict[str, str]:
    """``tail -n +1 /proc/net/tcp /proc/net/tcp6 …`` output → ``{"tcp": text, "tcp6": text, …}``.

    tail heads each file with ``==> /proc/net/tcp <==``; files it could not read are absent.
    """
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = re.fullmatch(r"==> /proc/net/(tcp6?|udp6?) <==", line.strip())
        if match:
            current = files.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    if not files:
        raise ListenerParseError("no /proc/net section in the output")
    return {name: "\n".join(lines) for name, lines in files.items()}
