"""The host firewall from ``iptables-save`` and ``nft list ruleset`` output: pure parsers.

What the rules need to know, not a firewall emulator: whether new inbound traffic is
denied by default (INPUT policy, a final DROP/REJECT, ufw, firewalld), which ports the
INPUT path accepts and from where, which ports Docker DNATs to containers (those never
cross INPUT: they are forwarded), and what the operator put in ``DOCKER-USER``.

Approximations, on purpose: jumps are followed in order; rules after a conditional
RETURN, or inside a chain entered conditionally, do not count as a default deny;
several input hooks are merged (a port is allowed when any of them accepts it).
Counters are dropped so an unchanged firewall gives an unchanged snapshot.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from .snapshot import Firewall, FirewallRule

DOCKER_CHAINS = frozenset({"DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-FORWARD"})
_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "RETURN": "return", "DNAT": "dnat"}
_COUNTERS = re.compile(r"\bcounter packets \d+ bytes \d+")


class FirewallParseError(ValueError):
    """The text is not what ``iptables-save`` or ``nft list ruleset`` print."""


@dataclass
class _Chain:
    policy: str = ""  # accept/drop for built-in (or base) chains
    hook: str = ""  # nft: the hook of a base chain
    rules: list[FirewallRule] = field(default_factory=list)


def _ports(text: str) -> tuple[str, ...]:
    """``22``, ``80,443``, ``8000:8010`` (iptables) or ``8000-8010`` (nft) → ``("22",)``, …"""
    return tuple(p.strip().replace(":", "-") for p in text.strip("{} ").split(",") if p.strip())


def _states_established_only(states: str) -> tuple[bool, bool]:
    """(established only, narrowed otherwise): NEW or UNTRACKED is what a plain allow matches."""
    found = {s.strip().lower() for s in states.strip("{} ").split(",") if s.strip()}
    if found and found <= {"established", "related"}:
        return True, False
    return False, not found <= {"new", "untracked", "established", "related"}


# --- iptables-save ---------------------------------------------------------------------


# Options that take no value (tcp flags, the recent module, log and NAT flags).
_FLAGS = frozenset(
    {"--syn", "-f", "--fragment", "--rsource", "--rdest", "--set", "--update", "--rcheck", "--remove", "--random", "--random-fully", "--persistent"}
)
_NOT_CHAINS = frozenset({"LOG", "MASQUERADE", "SNAT", "MARK", "CONNMARK", "NFLOG", "TCPMSS", "CT", "NOTRACK", "CHECKSUM"})


def _iptables_rule(chain: str, line: str, args: list[str]) -> FirewallRule:
    fields: dict[str, object] = {"chain": chain, "text": line, "action": "other"}
    other = negate = False
    i = 0
    while i < len(args):
        opt = args[i]
        if opt == "!":
            negate, i = True, i + 1
            continue
        takes_value = opt not in _FLAGS and i + 1 < len(args) and not args[i + 1].startswith("-")
        value = args[i + 1] if takes_value else ""
        i += 2 if takes_value else 1
        bang, negate = ("!" if negate else ""), False
        if opt in ("-p", "--protocol"):
            fields["protocol"] = "" if value == "all" else value.lower()
            other = other or bool(bang)
        elif opt in ("-s", "--source"):
            fields["source"] = bang + value.removesuffix("/32")
        elif opt in ("-d", "--destination"):
            fields["destination"] = bang + value.removesuffix("/32")
        elif opt in ("-i", "--in-interface"):
            fields["in_interface"] = bang + value
        elif opt in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            fields["ports"] = _ports(value)
            other = other or bool(bang)
        elif opt == "--ctorigdstport":
            fields["orig_ports"] = _ports(value)
        elif opt in ("--ctstate", "--state"):
            established, narrowed = _states_established_only(value)
            fields["established_only"] = established and not bang
            other = other or narrowed or bool(bang)
        elif opt in ("-j", "--jump", "-g", "--goto"):
            if value in _VERDICTS:
                fields["action"] = _VERDICTS[value]
            elif value not in _NOT_CHAINS:
                fields["action"], fields["target"] = "jump", value
        elif opt == "--to-destination":
            fields["target"] = value
        elif opt not in ("-m", "--match", "--comment", "--reject-with", "--log-prefix", "--log-level"):
            other = True  # a match Posture does not model narrows the rule
    fields["other_conditions"] = other
    return FirewallRule(**fields)  # type: ignore[arg-type]


def _iptables_tables(text: str) -> dict[str, dict[str, _Chain]]:
    tables: dict[str, dict[str, _Chain]] = {}
    current: dict[str, _Chain] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {})
        elif line == "COMMIT":
            current = None
        elif current is None:
            raise FirewallParseError(f"line {number}: {line[:80]!r} outside a table")
        elif line.startswith(":"):
            name, policy = (line[1:].split() + ["-"])[:2]
            current.setdefault(name, _Chain()).policy = "" if policy == "-" else policy.lower()
        elif line.startswith("-A "):
            try:
                args = shlex.split(line)
            except ValueError as exc:
                raise FirewallParseError(f"line {number}: {exc}") from None
            chain = args[1]
            current.setdefault(chain, _Chain()).rules.append(_iptables_rule(chain, line, args[2:]))
        else:
            raise FirewallParseError(f"line {number} is not iptables-save output: {line[:80]!r}")
    return tables


def parse_iptables_save(text: str) -> Firewall:
    tables = _iptables_tables(text)
    filter_chains = tables.get("filter", {})
    nat_chains = tables.get("nat", {})
    facts = _input_facts(filter_chains, ["INPUT"])
    names = set(filter_chains) | set(nat_chains)
    frontends = []
    if any(n.startswith("ufw-") for n in names):
        frontends.append("ufw")
    if any(n in ("INPUT_ZONES", "INPUT_direct") or n.startswith("IN_public") for n in names):
        frontends.append("firewalld")
    return Firewall(
        source="iptables-save",
        frontends=tuple(frontends),
        input_default_deny=facts.default_deny,
        input_policy=facts.policy,
        input_deny_by=facts.deny_by,
        input_allows=tuple(facts.allows),
        docker_chains=bool(DOCKER_CHAINS & names),
        docker_forwards=tuple(r for r in nat_chains.get("DOCKER", _Chain()).rules if r.action == "dnat"),
        docker_user=tuple(filter_chains.get("DOCKER-USER", _Chain()).rules),
    )


# --- the INPUT path, for both -----------------------------------------------------------


@dataclass
class _InputFacts:
    default_deny: bool = False
    policy: str = ""
    deny_by: str = ""
    allows: list[FirewallRule] = field(default_factory=list)


def _walk(chains: dict[str, _Chain], name: str, via: FirewallRule | None, seen: set[str]) -> Iterator[tuple[FirewallRule, bool]]:
    """Rules on the path from ``name`` in evaluation order, each with whether only some
    traffic reaches it (after a conditional RETURN, or through a conditional jump). A rule
    reached through a jump on an interface or source carries that condition."""
    seen = seen | {name}
    conditional = via is not None and not via.unconditional
    for rule in chains.get(name, _Chain()).rules:
        if via is not None and not rule.in_interface and not rule.source and (via.in_interface or via.source):
            rule = replace(rule, in_interface=via.in_interface, source=via.source)
        yield rule, conditional
        if rule.action == "return" and not rule.unconditional:
            conditional = True
        if rule.action == "jump" and rule.target in chains and rule.target not in seen:
            inherited = rule if not conditional else replace(rule, other_conditions=True)
            yield from _walk(chains, rule.target, inherited, seen)


def _admits_new_inbound(rule: FirewallRule) -> bool:
    """An accept for new TCP/UDP connections from outside (not loopback, not replies)."""
    return (
        rule.action == "accept"
        and not rule.established_only
        and rule.in_interface != "lo"
        and rule.protocol in ("", "tcp", "udp", "sctp")
        and not (rule.other_conditions and not rule.ports)
    )


def _input_facts(chains: dict[str, _Chain], entries: list[str]) -> _InputFacts:
    facts = _InputFacts()
    for entry in entries:
        policy = chains[entry].policy if entry in chains else ""
        deny = policy in ("drop", "reject")
        deny_by = f"policy {policy.upper()} of {entry}" if deny else ""
        decided = deny
        for rule, conditional in _walk(chains, entry, None, set()):
            if _admits_new_inbound(rule):
                facts.allows.append(rule)
            if not decided and not conditional and rule.unconditional and rule.action in ("accept", "drop", "reject"):
                deny, decided = rule.action != "accept", True
                deny_by = rule.text if deny else ""
        if deny and not facts.default_deny:
            facts.default_deny, facts.policy, facts.deny_by = True, policy, deny_by
        facts.policy = facts.policy or policy
    facts.allows = list(dict.fromkeys(facts.allows))
    return facts


# --- nft list ruleset --------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\S+')
_HEADER = re.compile(r"^(table|chain|set|map|flowtable|counter|quota|ct\s+\w+|limit|secmark|synproxy)\s+(.*?)\s*\{$")


def _nft_rule(chain: str, line: str) -> FirewallRule:
    tokens = [t.strip('"') for t in _TOKEN.findall(line)]
    fields: dict[str, object] = {"chain": chain, "text": line, "action": "other"}
    other = False
    i = 0

    def value_at(j: int) -> tuple[str, str, int]:
        """(operator, value, next index) for ``key [!=] value``."""
        if j < len(tokens) and tokens[j] in ("!=", "==", "eq", "ne"):
            op = "!" if tokens[j] in ("!=", "ne") else ""
            return op, tokens[j + 1] if j + 1 < len(tokens) else "", j + 2
        return "", tokens[j] if j < len(tokens) else "", j + 1

    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if t in ("ip", "ip6") and nxt in ("saddr", "daddr"):
            op, value, i = value_at(i + 2)
            fields["source" if nxt == "saddr" else "destination"] = op + value.removesuffix("/32")
        elif t in ("iifname", "iif"):
            op, value, i = value_at(i + 1)
            fields["in_interface"] = op + value
        elif t in ("tcp", "udp", "sctp", "th") and nxt in ("dport", "sport"):
            op, value, i = value_at(i + 2)
            if t != "th":
                fields["protocol"] = t
            if nxt == "dport" and not op:
                fields["ports"] = _ports(value)
            else:
                other = True
        elif t == "meta" and nxt == "l4proto":
            op, value, i = value_at(i + 2)
            fields["protocol"] = value if not op and not value.startswith("{") else "other"
        elif t == "ct" and nxt == "state":
            op, value, i = value_at(i + 2)
            established, narrowed = _states_established_only(value)
            fields["established_only"] = established and not op
            other = other or narrowed or bool(op)
        elif t == "ct" and nxt == "original" and i + 2 < len(tokens) and tokens[i + 2] == "proto-dst":
            _op, value, i = value_at(i + 3)
            fields["orig_ports"] = _ports(value)
        elif t == "counter":
            i += 5 if nxt == "packets" else 1
        elif t in ("comment", "prefix", "level", "flags"):
            i += 2
        elif t == "log":
            i += 1
        elif t in ("accept", "drop", "return"):
            fields["action"] = t
            i += 1
        elif t == "reject":
            fields["action"] = "reject"
            break
        elif t in ("jump", "goto"):
            fields["action"], fields["target"] = "jump", nxt
            i += 2
        elif t == "dnat":
            fields["action"] = "dnat"
            rest = tokens[i + 1 :]
            fields["target"] = rest[rest.index("to") + 1] if "to" in rest and rest.index("to") + 1 < len(rest) else ""
            break
        else:
            other = True
            i += 1
    fields["other_conditions"] = other
    return FirewallRule(**fields)  # type: ignore[arg-type]


def _nft_tables(text: str) -> dict[str, dict[str, _Chain]]:
    """``{"inet filter": {"input": _Chain, …}, …}``."""
    tables: dict[str, dict[str, _Chain]] = {}
    stack: list[tuple[str, str]] = []  # (kind, name) of each open block
    table = ""
    inner = 0  # braces opened inside a set or map body, which may span lines
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COUNTERS.sub("counter", raw.strip())
        if not line or line.startswith("#"):
            continue
        header = _HEADER.match(line) if inner == 0 else None
        if header:
            kind, name = header.group(1).split()[0], header.group(2)
            if kind == "table":
                table = name
                tables.setdefault(table, {})
            elif kind == "chain" and stack and stack[-1][0] == "table":
                tables[table].setdefault(name, _Chain())
            stack.append((kind, name))
            continue
        if line == "}" and inner == 0:
            if not stack:
                raise FirewallParseError(f"line {number}: unbalanced }}")
            stack.pop()
            continue
        if not stack:
            raise FirewallParseError(f"line {number} is not nft output: {line[:80]!r}")
        kind, name = stack[-1]
        if kind != "chain":
            inner += line.count("{") - line.count("}")
            continue
        chain = tables[table][name]
        if line.startswith("type ") and " hook " in line:
            chain.hook = line.split(" hook ", 1)[1].split()[0]
            policy = re.search(r"policy (\w+)", line)
            chain.policy = policy.group(1) if policy else "accept"
        else:
            chain.rules.append(_nft_rule(name, line.rstrip(";")))
    if stack:
        raise FirewallParseError("the ruleset ends inside a block")
    return tables


def parse_nft_ruleset(text: str) -> Firewall:
    tables = _nft_tables(text)
    default_deny, policy, deny_by, allows = False, "", "", []
    frontends: list[str] = []
    forwards: list[FirewallRule] = []
    docker_user: list[FirewallRule] = []
    docker = False
    for table, chains in tables.items():
        family, _, name = table.partition(" ")
        if name == "firewalld" and "firewalld" not in frontends:
            frontends.append("firewalld")
        if any(c.startswith("ufw-") for c in chains) and "ufw" not in frontends:
            frontends.append("ufw")
        docker = docker or bool(DOCKER_CHAINS & set(chains))
        if family in ("ip", "inet") and name == "nat":
            forwards += [r for r in chains.get("DOCKER", _Chain()).rules if r.action == "dnat"]
        if family in ("ip", "inet") and "DOCKER-USER" in chains:
            docker_user += chains["DOCKER-USER"].rules
        entries = [c for c, chain in chains.items() if chain.hook == "input" and family in ("ip", "ip6", "inet")]
        if entries:
            facts = _input_facts(chains, entries)
            allows += facts.allows
            if facts.default_deny and not default_deny:
                default_deny, policy, deny_by = True, facts.policy, f"{facts.deny_by} (table {table})"
            policy = policy or facts.policy
    return Firewall(
        source="nft list ruleset",
        frontends=tuple(frontends),
        input_default_deny=default_deny,
        input_policy=policy,
        input_deny_by=deny_by,
        input_allows=tuple(allows),
        docker_chains=docker,
        docker_forwards=tuple(forwards),
        docker_user=tuple(docker_user),
    )


def combine(*readings: Firewall | None) -> Firewall | None:
    """iptables-save and nft show one kernel from two sides (iptables-nft rules appear in
    both); new traffic must pass every input hook, so any default deny counts."""
    found = [r for r in readings if r is not None]
    if not found:
        return None
    first = found[0]
    for other in found[1:]:
        first = replace(
            first,
            source=f"{first.source} + {other.source}",
            frontends=tuple(dict.fromkeys(first.frontends + other.frontends)),
            input_default_deny=first.input_default_deny or other.input_default_deny,
            input_policy=first.input_policy if first.input_default_deny or not other.input_default_deny else other.input_policy,
            input_deny_by=first.input_deny_by or other.input_deny_by,
            input_allows=tuple(dict.fromkeys(first.input_allows + other.input_allows)),
            docker_chains=first.docker_chains or other.docker_chains,
            # iptables-save names Docker's rules as Docker wrote them: prefer it when it has them.
            docker_forwards=first.docker_forwards or other.docker_forwards,
            docker_user=first.docker_user or other.docker_user,
        )
    return first
