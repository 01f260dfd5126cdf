"""Run jobs in forked children, a few at a time, for the report's parts.

``os.fork`` rather than ``multiprocessing``: a Celery prefork child is a daemon process,
and daemon processes may not start ``multiprocessing`` children. A child inherits the
parent's memory (the rendered HTML, WeasyPrint's fonts already loaded), writes its result
to a file, and leaves with ``os._exit`` so that nothing the parent owns (its database
connection, Celery's state) is closed or flushed from the child. The memory a child's
render used goes back to the system when it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # prctl(2)


class ChildFailed(RuntimeError):
    pass


def run(jobs: Sequence[Callable[[], Any]], *, workers: int) -> list[Any]:
    """Each job's result, in order; at most ``workers`` children at once. A job that
    raises fails the whole run with its traceback; the other children are killed."""
    results: list[Any] = [None] * len(jobs)
    running: dict[int, tuple[int, Path]] = {}  # pid → (job index, result file)
    waiting = list(range(len(jobs)))
    with tempfile.TemporaryDirectory(prefix="posture-report-") as tmp:
        try:
            while waiting or running:
                while waiting and len(running) < max(1, workers):
                    index = waiting.pop(0)
                    out = Path(tmp) / f"{index}.pickle"
                    running[_start(jobs[index], out)] = (index, out)
                pid, status = _wait_any(running)
                index, out = running.pop(pid)
                ok, value = pickle.loads(out.read_bytes()) if out.exists() else (False, f"exited with status {status} and no result")
                if not ok:
                    raise ChildFailed(f"report part {index} failed: {value}")
                results[index] = value
        finally:
            for pid in running:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return results


def _start(job: Callable[[], Any], out: Path) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        # Leave the parent's soft-time-limit and termination handling to the parent, and
        # go when it goes (a worker killed at its hard time limit leaves no renderer behind).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        payload = (True, job())
    except BaseException:  # reported to the parent, whatever it was
        payload, code = (False, traceback.format_exc()), 1
    try:
        out.write_bytes(pickle.dumps(payload))
    finally:
        os._exit(code)


def _wait_any(running: dict[int, tuple[int, Path]]) -> tuple[int, int]:
    """The next of *our* children to finish (never another part of the process's)."""
    while True:
        for pid in running:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return done, status
        time.sleep(0.02)
