"""Text that came from an engine, made safe to keep and to show. Pure functions.

An engine chooses its names, labels, error bodies and warnings. Written to a terminal
they can carry escape sequences (retitle the window, rewrite earlier lines, hyperlink
to anywhere); kept whole they can be megabytes long. ``printable`` is for anything a
command prints; ``truncate`` keeps a string within a limit and says how much it cut.
"""

from __future__ import annotations

import re

# ECMA-48 escape sequences, in their 7-bit (ESC ...) and 8-bit (C1) spellings:
# CSI (colours, cursor moves, erase), OSC/DCS/SOS/PM/APC strings (window titles,
# hyperlinks, terminal queries) up to their terminator, and the short escapes.
_ESCAPE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|\Z)
    | \x1b [ -/]* [0-~]?
    """,
    re.VERBOSE | re.DOTALL,
)
# Remaining C0/C1 controls and DEL, and the Unicode controls that reorder or hide text
# (bidirectional overrides and isolates, as in "Trojan Source"), shown as escapes.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NEWLINES = re.compile("\r\n|[\n\r\u2028\u2029]")
# Room for the longest mark truncate() writes ("…[truncated 1023 GiB]").
_MARK_ROOM = 24


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` without terminal escape sequences or control characters.

    Escape sequences are removed whole; any other control character is shown as a
    visible ``\\xNN`` escape so the reader sees that something was there. Tabs become
    spaces; line breaks become spaces unless ``keep_newlines``.
    """
    value = _ESCAPE.sub("", str(text))
    value = _NEWLINES.sub("\n" if keep_newlines else " ", value).replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", value)


def size(n: int) -> str:
    """``20971520`` → ``"20 MiB"``: byte counts as people read them."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def truncate(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and a visible
    mark of what was cut (``"…[truncated 20 MiB]"``), the whole within ``limit``."""
    if len(text) <= limit:
        return text
    if limit < _MARK_ROOM:
        return text[:limit]
    keep = limit - _MARK_ROOM
    return f"{text[:keep]}…[truncated {size(len(text[keep:].encode('utf-8', 'surrogatepass')))}]"
