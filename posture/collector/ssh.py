"""The system ssh client's options for an engine's host: one list for the engine tunnel
(``engine._ssh_tunnel``) and the host reader (``hostio.SshSession``), so both pin the
host key the same way and neither reads the user's ssh configuration."""

from __future__ import annotations

from pathlib import Path

from .target import EngineTarget


def known_hosts_name(host: str, port: int | None) -> str:
    """The name ssh files a host key under for the registered host (its put_host_port)."""
    return host if port in (None, 22) else f"[{host}]:{port}"


def ssh_options(target: EngineTarget, *, workdir: Path, strict: str, connect_timeout: int) -> list[str]:
    """Options for connecting to ``target``'s host at an address the guard checked: the
    key is pinned under the registered name (``HostKeyAlias``), so pinning does not
    depend on what DNS said today; no user config, no agent, no password prompt. Keys
    are checked against the target's known_hosts file (polls always give one, empty
    until the first connection pins the key), or for a target built without one, a
    throwaway file in ``workdir``."""
    url = target.url
    known_hosts = target.ssh_known_hosts or workdir / "known_hosts"
    cmd = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"]
    cmd += ["-o", f"StrictHostKeyChecking={strict}", "-o", f"UserKnownHostsFile={known_hosts}"]
    cmd += ["-o", f"HostKeyAlias={known_hosts_name(url.host, url.port)}", "-o", "CheckHostIP=no"]
    if target.ssh_key:
        cmd += ["-o", "IdentitiesOnly=yes", "-i", str(target.ssh_key)]
    if url.port:
        cmd += ["-p", str(url.port)]
    if url.user:
        cmd += ["-l", url.user]
    return cmd
