"""What the kernel says about a process, for the benchmarks: its CPU time and memory,
read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """User and system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def memory_kib(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of the process's present memory, in KiB; empty
    when it is gone or a zombie. Not ``ru_maxrss`` for a child: one that subprocess starts
    with vfork keeps its parent's high-water mark through exec."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in fields}
