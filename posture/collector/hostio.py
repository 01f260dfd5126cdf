"""The host around the engine, read-only: its listening sockets and, over SSH, its firewall.

Opt-in per host (``EngineTarget.host_listeners``). How it reads, by engine URL:

- ``ssh://``: over SSH with the host's key and the known_hosts the engine tunnel pinned,
  one connection multiplexed for a few fixed commands (``COMMANDS``; never a string
  built from input): ``ss -Hltnup`` (or the ``/proc/net`` tables when ss is missing),
  then ``iptables-save`` and ``nft list ruleset``, each retried with ``sudo -n``.
- ``unix://``: ``/proc/net/{tcp,tcp6,udp,udp6}`` directly, when the worker runs on the
  engine's machine (the engine reports this machine's host name). Firewall rules are
  read over SSH only.
- ``tcp://``: nothing can be read; the snapshot says so.

Nothing here fails a poll: every failure becomes the listener or firewall error of the
snapshot's ``HostState``, and the container findings stand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import firewall, listeners
from .address import ForbiddenAddress, resolve_and_check
from .snapshot import Firewall, HostSnapshot, HostState, Listener
from .ssh import ssh_options
from .target import EngineTarget

log = logging.getLogger(__name__)

SS = "ss -Hltnup"
PROC_NET = "tail -n +1 /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6"
IPTABLES = "iptables-save"
NFT = "nft list ruleset"
# Every remote command, in full. Nothing else is ever sent.
COMMANDS = frozenset({SS, PROC_NET, IPTABLES, f"sudo -n {IPTABLES}", NFT, f"sudo -n {NFT}"})
MAX_OUTPUT = 8 * 1024 * 1024  # a firewall of a busy Kubernetes node runs to a few MiB
MAX_FDS_SCANNED = 200_000  # bound the /proc/PID/fd walk on a host with very many sockets
NOT_FOUND = 127  # the shell's "command not found"
# All of a poll's host reading shares this many engine timeouts, so it stays well inside
# the poll's time limit however many commands fail slowly.
BUDGET_TIMEOUTS = 3
SUDO_HINT = f"allow the SSH user `sudo -n` for exactly `{IPTABLES}` and `{NFT}`, e.g. in sudoers: USER ALL=(root) NOPASSWD: /usr/sbin/iptables-save, /usr/sbin/nft list ruleset"


class HostReadError(Exception):
    pass


def observe(target: EngineTarget, snapshot: HostSnapshot) -> HostSnapshot:
    """``snapshot`` with what the host shows around the engine, when the host opted in."""
    if not target.host_listeners:
        return snapshot
    try:
        state = read_host(target, snapshot.engine.name)
    except Exception as exc:  # reading the host must never cost the poll its container findings
        log.warning("reading the host of %s failed: %s", target.url, exc)
        state = HostState(listeners_error=f"reading the host failed: {exc}", firewall_error=f"reading the host failed: {exc}")
    return dataclasses.replace(snapshot, host=state)


def read_host(target: EngineTarget, engine_name: str) -> HostState:
    scheme = target.url.scheme
    if scheme == "ssh":
        return _read_over_ssh(target)
    if scheme == "unix":
        return _read_local(engine_name)
    why = f"listeners cannot be read for this host: a {scheme}:// host offers only the Engine API; register it as ssh:// to read its listeners and firewall"
    return HostState(listeners_error=why, firewall_error=why)


# --- this machine ----------------------------------------------------------------------


def _read_local(engine_name: str) -> HostState:
    here = socket.gethostname()
    no_firewall = "firewall rules are read over SSH only; register the host as ssh:// (with sudo -n for iptables-save and nft) to check them"
    if engine_name and engine_name.split(".")[0] != here.split(".")[0]:
        return HostState(
            listeners_error=(
                f"listeners cannot be read for this host: the engine runs on '{engine_name}' but this worker on '{here}', "
                "so this machine's /proc/net is not the engine host's (register it as ssh:// to read them)"
            ),
            firewall_error=no_firewall,
        )
    try:
        found = read_proc_net(Path("/proc"))
    except (OSError, listeners.ListenerParseError) as exc:
        return HostState(listeners_error=f"cannot read /proc/net: {exc}", firewall_error=no_firewall)
    return HostState(listeners=found, listeners_source="/proc/net", firewall_error=no_firewall)


def read_proc_net(proc: Path) -> tuple[Listener, ...]:
    """This machine's listeners, with process names where this user may read them."""
    files = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(FileNotFoundError):  # no IPv6 in this kernel
            files[name] = (proc / "net" / name).read_text()
    if not files:
        raise HostReadError("no /proc/net socket table")
    return listeners.parse_proc_files(files, _socket_owners(proc))


def _socket_owners(proc: Path) -> dict[str, str]:
    """Socket inode → process name, from /proc/PID/fd links this user may read."""
    owners: dict[str, str] = {}
    scanned = 0
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            fds = list((pid / "fd").iterdir())
            name = (pid / "comm").read_text().strip()
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            scanned += 1
            if scanned > MAX_FDS_SCANNED:
                return owners
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                owners.setdefault(link[8:-1], name)
    return owners


# --- over SSH ----------------------------------------------------------------------------


class SshSession:
    """One SSH connection (a ControlMaster) for a few fixed commands.

    The host key must already be in the known_hosts the engine tunnel pinned; without
    one (a target built by hand) it is accepted on first use, as the tunnel does.
    """

    def __init__(self, target: EngineTarget, workdir: Path) -> None:
        self.target = target
        self.control = workdir / "ctl"
        strict = "yes" if target.ssh_known_hosts else "accept-new"
        self.options = ssh_options(target, workdir=workdir, strict=strict, connect_timeout=max(1, int(target.timeout)))
        # Like the engine tunnel: to an address the guard checked now, the key pinned under the registered name.
        self.address = ""
        self.master: subprocess.Popen[bytes] | None = None
        self.deadline = time.monotonic() + BUDGET_TIMEOUTS * target.timeout

    def __enter__(self) -> SshSession:
        url = self.target.url
        try:
            self.address = resolve_and_check(url.host, url.port or 22)[0]
        except (ForbiddenAddress, OSError) as exc:
            raise HostReadError(f"ssh to {url}: {exc}") from None
        cmd = ["ssh", "-N", "-M", "-S", str(self.control), "-o", "ControlPersist=no", *self.options, "--", self.address]
        self.master = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.target.timeout + 2
        while not self.control.exists():
            if self.master.poll() is not None:
                err = (self.master.stderr.read() if self.master.stderr else b"").decode(errors="replace").strip().splitlines()
                raise HostReadError(f"ssh to {self.target.url} failed: {err[-1] if err else f'exit status {self.master.returncode}'}")
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise HostReadError(f"ssh to {self.target.url} did not connect within {self.target.timeout:g}s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.master is None:
            return
        self.master.terminate()
        try:
            self.master.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.master.kill()
            self.master.wait()

    def run(self, command: str) -> tuple[int, str, str]:
        """Exit status, output and last error line of one of ``COMMANDS``."""
        if command not in COMMANDS:
            raise ValueError(f"not an allowed host command: {command!r}")
        cmd = ["ssh", "-S", str(self.control), "-o", "ControlMaster=no", *self.options, "--", self.address, command]
        left = self.deadline - time.monotonic()
        if left <= 0:
            return 124, "", f"`{command}` was not run: reading the host took its whole {BUDGET_TIMEOUTS * self.target.timeout:g}s"
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=left, check=False)
            except subprocess.TimeoutExpired:
                return 124, "", f"`{command}` did not finish within the {BUDGET_TIMEOUTS * self.target.timeout:g}s given to reading the host"
            size = out.seek(0, os.SEEK_END)
            if size > MAX_OUTPUT:
                return 1, "", f"`{command}` printed {size} bytes, more than the {MAX_OUTPUT} Posture reads"
            out.seek(0)
            err.seek(0)
            lines = err.read(64 * 1024).decode(errors="replace").strip().splitlines()
            return proc.returncode, out.read().decode(errors="replace"), (lines[-1] if lines else "")


@contextlib.contextmanager
def ssh_session(target: EngineTarget) -> Iterator[SshSession]:
    with tempfile.TemporaryDirectory(prefix="posture-host-") as tmp, SshSession(target, Path(tmp)) as session:
        yield session


def _read_over_ssh(target: EngineTarget) -> HostState:
    try:
        with ssh_session(target) as session:
            found, source, listeners_error = _remote_listeners(session)
            rules, firewall_error = _remote_firewall(session)
    except HostReadError as exc:
        return HostState(listeners_error=str(exc), firewall_error=str(exc))
    return HostState(listeners=found, listeners_source=source, listeners_error=listeners_error, firewall=rules, firewall_error=firewall_error)


def _remote_listeners(session: SshSession) -> tuple[tuple[Listener, ...], str, str]:
    status, out, err = session.run(SS)
    if status == 0:
        try:
            return listeners.parse_ss(out), SS, ""
        except listeners.ListenerParseError as exc:
            return (), "", f"`{SS}` printed something else than ss output: {exc}"
    # No ss (a minimal host): the kernel's tables, without process names.
    status2, out2, err2 = session.run(PROC_NET)
    if out2.strip():
        try:
            return listeners.parse_proc_files(listeners.split_tail(out2)), "/proc/net (over ssh)", ""
        except listeners.ListenerParseError as exc:
            return (), "", f"the /proc/net tables could not be parsed: {exc}"
    return (), "", f"`{SS}` failed ({err or f'exit status {status}'}) and /proc/net could not be read ({err2 or f'exit status {status2}'})"


def _read_one(session: SshSession, command: str) -> tuple[str | None, str]:
    """The output of ``command`` (or of ``sudo -n command``), or why neither could run."""
    status, out, err = session.run(command)
    if status == 0:
        return out, ""
    if status == NOT_FOUND:
        return None, f"`{command}` is not installed"
    first = f"`{command}`: {err or f'exit status {status}'}"
    status, out, err = session.run(f"sudo -n {command}")
    if status == 0:
        return out, ""
    return None, f"{first}; `sudo -n {command}`: {err or f'exit status {status}'}"


def _remote_firewall(session: SshSession) -> tuple[Firewall | None, str]:
    readings: list[Firewall | None] = []
    problems = []
    for command, parse in ((IPTABLES, firewall.parse_iptables_save), (NFT, firewall.parse_nft_ruleset)):
        text, problem = _read_one(session, command)
        if text is None:
            problems.append(problem)
            continue
        try:
            readings.append(parse(text))
        except firewall.FirewallParseError as exc:
            problems.append(f"`{command}` output could not be parsed: {exc}")
    combined = firewall.combine(*readings)
    if combined is None:
        return None, "firewall rules cannot be read: " + "; ".join(problems) + f". To let Posture read them, {SUDO_HINT}"
    return combined, ""
