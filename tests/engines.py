"""Real Docker engines for the tests: each with its own data-root, exec-root, socket,
pidfile and bridge, and a busybox image imported from Debian's busybox-static.

``TestEngine.start()`` brings one up; ``stop()`` removes its containers, stops the
daemon, unmounts what it left under its roots and deletes its bridge.
Set ``POSTURE_TEST_ENGINE_URL`` to use an engine started elsewhere instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

IMAGE = "posture-test/busybox:1"
# Several checkouts may run their suites side by side on one machine: each picks a slot
# (POSTURE_TEST_SLOT, 0-9) so bridges and subnets never collide.
SLOT = int(os.environ.get("POSTURE_TEST_SLOT", "0"))
BUSYBOX = Path("/bin/busybox")


class EngineUnavailable(RuntimeError):
    pass


def _busybox_tar(workdir: Path) -> Path:
    """A root filesystem of /bin/busybox and a link per applet, as a tarball."""
    if not BUSYBOX.exists():
        raise EngineUnavailable("/bin/busybox is missing: apt-get install busybox-static")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    tar_path = workdir / "busybox.tar"
    with tarfile.open(tar_path, "w") as tar:
        for d in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
    return tar_path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _processes_using(path: Path) -> list[int]:
    """Daemons (dockerd, containerd, shims) whose command line names ``path``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if str(path).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


def sweep_stale() -> None:
    """Unmount and delete what engines of a test run that died left in /tmp."""
    tmp = Path(tempfile.gettempdir())
    for path in [*tmp.glob("pst-*"), *tmp.glob("posture-engine-*")]:
        parts = path.name.split("-")
        pid = parts[1] if path.name.startswith("pst-") else parts[2]
        if pid.isdigit() and not _alive(int(pid)):
            for orphan in _processes_using(path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(orphan, signal.SIGKILL)
            for point in _mounts_under(path):
                subprocess.run(["umount", "-l", point], capture_output=True)
            shutil.rmtree(path, ignore_errors=True)


def _mounts_under(*roots: Path) -> list[str]:
    prefixes = tuple(str(r) for r in roots)
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh]
    return sorted((p for p in points if p.startswith(prefixes)), key=len, reverse=True)


@dataclass
class TestEngine:
    """One dockerd. ``url`` is what Posture is given; ``client`` drives scenarios."""

    __test__ = False  # not a pytest class

    name: str
    index: int = 0
    extra_args: list[str] = field(default_factory=list)
    external_url: str = ""
    root: Path = field(init=False)
    proc: subprocess.Popen | None = field(init=False, default=None)
    created: list[str] = field(init=False, default_factory=list)

    @property
    def bridge(self) -> str:
        # One name per index: a run that died leaves its bridge, and the next run's
        # start deletes it rather than add a second bridge on the same subnet.
        return f"pst{SLOT}e{self.index}"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return self.external_url or f"unix://{self.socket}"

    @property
    def exec_root(self) -> Path:
        # Short: containerd's socket path must fit in 108 bytes.
        return Path(f"/tmp/pst-{os.getpid()}-{self.index}")

    def start(self, timeout: float = 40) -> TestEngine:
        if self.external_url:
            self.client = docker.DockerClient(base_url=self.external_url, timeout=30)
            self._ensure_image()
            return self
        if shutil.which("dockerd") is None:
            raise EngineUnavailable("dockerd is not installed: apt-get install docker.io")
        if os.geteuid() != 0:
            raise EngineUnavailable("starting dockerd needs root")
        sweep_stale()
        self.root = Path(tempfile.mkdtemp(prefix=f"posture-engine-{os.getpid()}-{self.name}-"))
        self.root.chmod(0o711)  # a userns-remapped daemon must traverse it
        subnet = f"10.{213 + SLOT}.{10 + self.index}"
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for cmd in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{subnet}.1/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode:
                raise EngineUnavailable(f"{' '.join(cmd)}: {result.stderr.strip()}")
        self._args = [
            "dockerd",
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.root / "docker.pid"),
            "--host", f"unix://{self.socket}",
            "--bridge", self.bridge,
            # The sandbox's firewall is not ours to change; published ports go
            # through docker-proxy on the host, which is what the tests read.
            "--iptables=false",
            "--ip-masq=false",
            *self.extra_args,
        ]  # fmt: skip
        self._launch(timeout)
        self._ensure_image()
        return self

    def _launch(self, timeout: float) -> None:
        """Start dockerd on this engine's roots and wait until it answers."""
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as the daemon
        self.proc = subprocess.Popen(self._args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise EngineUnavailable(f"dockerd {self.name} exited with {self.proc.returncode}:\n{tail}")
            if self.socket.exists():
                try:
                    self.client = docker.DockerClient(base_url=self.url, timeout=30)
                    self.client.ping()
                    break
                except Exception:  # not up yet
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise EngineUnavailable(f"dockerd {self.name} did not answer within {timeout}s")
            time.sleep(0.2)

    def stop_daemon(self) -> None:
        """The engine goes away (its containers stay on disk): ``start_daemon()`` brings it back."""
        assert self.proc is not None and not self.external_url
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def start_daemon(self, timeout: float = 40) -> None:
        self._launch(timeout)

    def _ensure_image(self) -> None:
        try:
            self.client.images.get(IMAGE)
            return
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory() as tmp:
            tar = _busybox_tar(Path(tmp))
            repo, tag = IMAGE.split(":")
            with open(tar, "rb") as fh:
                self.client.api.import_image_from_data(fh.read(), repository=repo, tag=tag, changes=['CMD ["/bin/sh"]'])

    # --- scenarios ---------------------------------------------------------------

    def container(
        self, name: str, *, start: bool = True, command: str = "sleep 3600", image: str = IMAGE, **kwargs: object
    ) -> docker.models.containers.Container:
        """Create (and by default start) a busybox container; removed at teardown. Another
        ``image`` name is the busybox image tagged so (``tag_image``)."""
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True)
        container = self.client.containers.create(image, command=command, name=name, **kwargs)
        self.created.append(container.id)
        if start:
            container.start()
        return container

    def tag_image(self, name: str) -> str:
        """The busybox image under another name (``traefik:v3``), for scopes by image."""
        repo, _, tag = name.partition(":")
        self.client.images.get(IMAGE).tag(repo, tag or "latest")
        return name

    def remove(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True)

    def network(self, name: str, **kwargs: object) -> docker.models.networks.Network:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.networks.get(name).remove()
        return self.client.networks.create(name, **kwargs)

    def reset(self) -> TestEngine:
        """Remove every container and user network, so each test starts clean. On an
        engine started elsewhere only what the tests created is removed."""
        if self.external_url:
            for cid in self.created:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.containers.get(cid).remove(force=True)
            self.created.clear()
            return self
        for c in self.client.containers.list(all=True):
            c.remove(force=True)
        for n in self.client.networks.list():
            if n.name not in ("bridge", "host", "none"):
                n.remove()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.reset()
        if self.external_url:
            return
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for point in _mounts_under(self.root, self.exec_root):
            subprocess.run(["umount", "-l", point], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        # A userns-remapped daemon also leaves <exec-root>.<uid>.<gid> beside its exec-root.
        for leftover in self.exec_root.parent.glob(f"{self.exec_root.name}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)
