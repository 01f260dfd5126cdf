"""Which network addresses Posture will talk to, however they are spelled.

An engine URL is operator input and a DNS answer is anyone's: both must not steer a
worker to a cloud metadata service (credentials) or to addresses that mean "this
machine, any interface". Every host is reduced to ``ipaddress`` objects the way the
system's resolver would read it — ``inet_aton`` accepts decimal (2852039166), hex
(0xa9fea9fe), octal (0251.0376.0251.0376) and short (169.254.43518) IPv4 forms — and
IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4, Teredo, compatible) are
checked as the IPv4 address they reach. Names are resolved when a poll connects,
every answer is checked, and the poll connects to the address it checked.

Loopback stays allowed: registering the local engine over TCP is a feature.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) → the addresses the name stands for, as strings; raises OSError.
Resolver = Callable[[str, int], Iterable[str]]

# Cloud metadata services: credentials for whoever asks from the machine.
METADATA_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local; AWS, GCP, Azure, OCI metadata at .169.254
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("168.63.129.16/32"),  # Azure WireServer (certificates, agent config)
)
# ...and addresses that are no engine. Private ranges are not here: engines live there.
FORBIDDEN_NETWORKS = (
    *METADATA_NETWORKS,
    ipaddress.ip_network("0.0.0.0/8"),  # "this network"; 0.0.0.0 is any local interface
    ipaddress.ip_network("::/128"),  # unspecified
    ipaddress.ip_network("224.0.0.0/4"),  # multicast
    ipaddress.ip_network("ff00::/8"),  # IPv6 multicast
    ipaddress.ip_network("240.0.0.0/4"),  # reserved, and the broadcast address
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address in the last 32 bits
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: a /48 to /96 translator prefix inside it
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class ForbiddenAddress(ValueError):
    """An address Posture refuses to connect to."""


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address if any resolver would read it as one, else None.

    Brackets and an IPv6 zone are accepted; IPv4 goes through ``inet_aton`` so every
    legacy spelling comes out as the address it means.
    """
    host = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton reads digits, dots and 0x only; anything else is a name.
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host) or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _rfc6052(value: int, prefix: int) -> ipaddress.IPv4Address:
    """The IPv4 address a translator with a ``prefix``-bit prefix reaches (bits 64-71 skipped)."""
    if prefix == 96:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    bits = format(value, "0128b")
    bits = bits[:64] + bits[72:]
    return ipaddress.IPv4Address(int(bits[prefix : prefix + 32], 2))


def embedded_ipv4(ip: IPAddress) -> tuple[list[ipaddress.IPv4Address], list[ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address reaches: (as itself — mapped or compatible, which
    the kernel treats as the IPv4 address — and through a translator or tunnel)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return [], []
    value = int(ip)
    itself = [ip.ipv4_mapped] if ip.ipv4_mapped else []
    if ip in _IPV4_COMPATIBLE and value > 1:
        itself.append(ipaddress.IPv4Address(value))
    translated = [ip.sixtofour] if ip.sixtofour else []
    if ip.teredo:
        translated.append(ip.teredo[1])
    if ip in _NAT64:
        translated.append(_rfc6052(value, 96))
    if ip in _NAT64_LOCAL:  # the prefix length is the translator's secret: try each
        translated += [_rfc6052(value, prefix) for prefix in (48, 56, 64, 96)]
    return itself, translated


def check_ip(ip: IPAddress, shown_as: str = "") -> IPAddress:
    """``ip`` itself, or ``ForbiddenAddress`` naming what it is."""
    spelled = f"{shown_as} ({ip})" if shown_as and shown_as.strip("[]") != str(ip) else str(ip)
    itself, translated = embedded_ipv4(ip)
    # A translated address is only refused for reaching metadata: the other layouts of
    # a local-use NAT64 prefix read as arbitrary, often unspecified, IPv4 addresses.
    candidates = [(ip, FORBIDDEN_NETWORKS)] + [(a, FORBIDDEN_NETWORKS) for a in itself] + [(a, METADATA_NETWORKS) for a in translated]
    for candidate, networks in candidates:
        if any(candidate.version == net.version and candidate in net for net in networks):
            reaches = "" if candidate is ip else f", which reaches {candidate},"
            raise ForbiddenAddress(f"{spelled}{reaches} is a link-local, metadata or unspecified address (or not a unicast one); Posture will not poll it")
    return ip


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for ``host``, in its order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_and_check(host: str, port: int, resolver: Resolver = system_resolver) -> list[str]:
    """The addresses to connect to for ``host``, every one checked, duplicates removed.

    Raises ``ForbiddenAddress`` if any answer is forbidden (one bad answer among good
    ones is a sign of DNS rebinding, not a reason to pick another), ``OSError`` if the
    name does not resolve.
    """
    literal = parse_ip(host)
    if literal is not None:
        return [str(check_ip(literal, host))]
    answers = list(resolver(host, port))
    if not answers:
        raise OSError(f"{host} resolves to no address")
    checked: list[str] = []
    for answer in answers:
        ip = parse_ip(answer)
        if ip is None:
            raise ForbiddenAddress(f"{host} resolved to {answer!r}, which is not an IP address")
        try:
            check_ip(ip)
        except ForbiddenAddress as exc:
            raise ForbiddenAddress(f"{host} resolves to {exc}") from None
        text = str(ip)
        if text not in checked:
            checked.append(text)
    return checked
