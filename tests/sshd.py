"""A real sshd on 127.0.0.1 for ssh:// hosts, with its own host key and one client key."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class SshdUnavailable(RuntimeError):
    pass


@dataclass
class Sshd:
    root: Path
    port: int
    client_key: Path
    proc: subprocess.Popen

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start_sshd(root: Path) -> Sshd:
    if not Path("/usr/sbin/sshd").exists() or shutil.which("ssh") is None:
        raise SshdUnavailable("sshd is not installed: apt-get install openssh-server")
    if os.geteuid() != 0:
        raise SshdUnavailable("this sshd logs in as root and must run as root")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    _keygen(root / "host_key")
    _keygen(root / "client_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host_key'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "AllowStreamLocalForwarding yes",
                f"PidFile {root / 'sshd.pid'}",
                "",
            ]
        )
    )
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=open(root / "sshd.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SshdUnavailable(f"sshd did not start: {(root / 'sshd.log').read_text()[-1000:]}")
        time.sleep(0.1)
    return Sshd(root=root, port=port, client_key=root / "client_key", proc=proc)
