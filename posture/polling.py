"""One poll of one engine: lease, credentials, collect, evaluate, apply; every failure recorded.

The I/O side of polling lives here (temporary credential files, the engine connection);
``DockerHost`` keeps the state and the decisions (leases, how a result is stored).
Tasks, the ``poll`` command and the host form's "Test connection" call this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from posture.collector import (
    AnswerTooLarge,
    Budget,
    EngineRedirected,
    EngineTarget,
    InvalidEngineURL,
    MalformedAnswer,
    parse_engine_url,
)
from posture.collector.engine import EngineError, collect, probe
from posture.crypto import CredentialKeyError
from posture.models import DockerHost, HostStatus, PollRun
from posture.rules import evaluate_all

log = logging.getLogger(__name__)

# What reading an engine may raise, each with a sentence for the operator.
ENGINE_FAILURES = (EngineError, MalformedAnswer, CredentialKeyError, InvalidEngineURL)
# An engine that answered, but not as the Docker API does: an error, not "unreachable".
ANSWERED_WRONGLY = (MalformedAnswer, AnswerTooLarge, EngineRedirected)


def failure_status(exc: Exception) -> HostStatus:
    """How a failed poll shows on the host: could not reach it, or it (or we) got it wrong."""
    if isinstance(exc, EngineError) and not isinstance(exc, ANSWERED_WRONGLY):
        return HostStatus.UNREACHABLE
    return HostStatus.ERROR


def poll_budget() -> Budget:
    return Budget(settings.POLL_DEADLINE, settings.MAX_ANSWER_BYTES, settings.MAX_POLL_BYTES)


@dataclass(frozen=True)
class Credentials:
    """One connection's target, with credentials as files only this process's user can read."""

    target: EngineTarget
    known_hosts: Path | None

    def pinned_host_keys(self) -> str | None:
        """The ssh host keys after connecting (trust on first use), for the caller to keep or not."""
        return self.known_hosts.read_text() if self.known_hosts else None


@contextlib.contextmanager
def credentials(host: DockerHost) -> Iterator[Credentials]:
    """Decrypt the host's credentials into a private directory for the length of one connection."""
    workdir = Path(tempfile.mkdtemp(prefix="posture-creds-"))
    try:
        os.chmod(workdir, 0o700)
        ssh = host.scheme == "ssh"
        files: dict[str, Path | None] = {}
        for field in ("tls_ca", "tls_cert", "tls_key", "ssh_key", "ssh_known_hosts"):
            value = getattr(host, field)
            # ssh needs a known_hosts file even when empty: the first connection pins the key.
            if not value and not (ssh and field == "ssh_known_hosts"):
                files[field] = None
                continue
            path = workdir / field
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(value if value.endswith("\n") or not value else value + "\n")
            files[field] = path
        target = EngineTarget(
            url=parse_engine_url(host.url),
            insecure=host.insecure,
            timeout=settings.ENGINE_TIMEOUT,
            tls_ca=files["tls_ca"],
            tls_cert=files["tls_cert"],
            tls_key=files["tls_key"],
            ssh_key=files["ssh_key"],
            ssh_known_hosts=files["ssh_known_hosts"],
            host_listeners=host.host_listeners,
        )
        yield Credentials(target=target, known_hosts=files["ssh_known_hosts"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def poll(host: DockerHost, token: str | None = None) -> PollRun | None:
    """Poll ``host`` now. None when another poll of this host holds the lease.

    Failures are recorded on the run and the host, never raised; ``run.retryable``
    tells the caller whether trying again later could help.
    """
    token = token or uuid.uuid4().hex
    if not host.acquire_lease(token):
        return None
    try:
        run = PollRun.begin(host, token)
        previous = host.snapshot.snapshot() if host.snapshot else None
        try:
            with credentials(host) as creds:
                snap = collect(creds.target, previous, budget=poll_budget())
                pinned = creds.pinned_host_keys()
        except ENGINE_FAILURES as exc:
            run.retryable = bool(getattr(exc, "transient", False))
            host.record_failure(run, str(exc), status=failure_status(exc))
            return run
        run.retryable = False
        host.apply_snapshot(snap, evaluate_all(snap, host_name=host.name), run, pinned_host_keys=pinned)
        return run
    finally:
        host.release_lease(token)


def record_timeout(host: DockerHost, token: str, seconds: int) -> PollRun | None:
    """A poll cut by the soft time limit: the engine is too slow to be read."""
    run = PollRun.objects.running(host, token)
    if run is not None:
        host.record_failure(run, f"the engine did not answer within the {seconds}s poll time limit", status=HostStatus.UNREACHABLE)
    host.release_lease(token)
    return run


def test_connection(host: DockerHost) -> tuple[bool, str]:
    """Connect with the host's (unsaved) settings and read ``/version``. Nothing is stored:
    not even the ssh host key the server showed, since the form may never be saved."""
    try:
        with credentials(host) as creds:
            return True, probe(creds.target, budget=Budget.for_probe(settings.PROBE_DEADLINE))
    except ENGINE_FAILURES as exc:
        return False, str(exc)
