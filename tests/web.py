"""A running Posture over HTTP, for tests that start ``manage.py serve`` themselves:
signing in, and serving for the length of a block, then Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from .conftest import free_port
from .waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def signed_in(session: requests.Session, base: str, password: str, username: str = "admin") -> bool:
    """Post the login form once; True when it lands on the fleet page. False while the
    server is not listening yet (for ``wait_for``)."""
    try:
        page = session.get(f"{base}/login/", timeout=10)
    except requests.RequestException:
        return False  # not listening, or still booting
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{base}/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/login/"},
        timeout=5,
    )
    return response.url.rstrip("/") == base


@dataclass
class Served:
    session: requests.Session  # signed in as admin
    base: str
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(env: dict[str, str], workdir: Path, password: str, *args: str) -> Iterator[Served]:
    """``manage.py serve --port PORT *args`` with ``env``, signed in as admin with
    ``password``; after the block, Ctrl-C, and everything it started must stop with exit 0."""
    port = free_port()
    served = Served(session=requests.Session(), base=f"http://127.0.0.1:{port}", log=workdir / "serve.log")
    served.session.trust_env = False
    with open(served.log, "wb") as log:
        command = [sys.executable, "manage.py", "serve", "--port", str(port), *args]
        serve = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: signed_in(served.session, served.base, password), timeout=60, what="the web server and a login")
            yield served
        finally:
            serve.send_signal(signal.SIGINT)  # Ctrl-C
            code = serve.wait(timeout=40)
    assert code == 0, served.output[-3000:]
    leftovers = subprocess.run(["pgrep", "-f", f"posture.*{workdir}"], capture_output=True, text=True).stdout
    assert not leftovers.strip(), leftovers
