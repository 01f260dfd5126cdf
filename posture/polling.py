"""One poll of one engine: lease, credentials, collect, evaluate, apply; every failure recorded.

The lease is the poll's running ``PollRun`` (see ``posture/models/polls.py``), renewed
by ``Heartbeat`` while the poll works. A poll whose engine answers exactly what the
host's findings were concluded from (``evaluation_key``) skips the rules and writes the
run and the host's status only.

The I/O side of polling lives here (temporary credential files, the engine connection);
``DockerHost`` and ``PollRun`` keep the state and the decisions (the lease, how a result is stored).
Tasks, the ``poll`` command and the host form's "Test connection" call this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from posture import rules
from posture.collector import (
    AnswerTooLarge,
    Budget,
    EngineRedirected,
    EngineTarget,
    InvalidEngineURL,
    MalformedAnswer,
    parse_engine_url,
)
from posture.collector.engine import EngineError, Unchanged, collect, probe
from posture.collector.text import printable, truncate
from posture.crypto import CredentialKeyError
from posture.models import DockerHost, HostStatus, PollRun
from posture.models.hosts import LeaseLost
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


# The database itself went away: nothing can be recorded now; the task retries, and the
# retry records this attempt as failed with the cause (``PollRun.start(interrupted=…)``).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


def _rules_version() -> str:
    """A digest of the rule code: findings concluded by other rules are concluded again."""
    digest = hashlib.sha256()
    for path in sorted(Path(rules.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


RULES_VERSION = _rules_version()


def evaluation_key(digest: str, host: DockerHost) -> str:
    """What a host's findings follow from: the snapshot's digest, the rule code and the host's name."""
    return hashlib.sha256(f"{digest}|{RULES_VERSION}|{host.name}".encode()).hexdigest()


def _up_to_date(host: DockerHost) -> bool:
    """The host's findings were concluded from its stored snapshot by today's rules."""
    return bool(host.snapshot and host.evaluated) and host.evaluated == evaluation_key(host.snapshot.digest, host)


class Heartbeat:
    """Renews the leases of the polls this process runs, from one thread of its own.

    A poll of a few milliseconds is never renewed; one that works past a third of the
    lease is, every third of it, until it ends. When the process dies the renewals stop
    and the lease runs out within ``POSTURE_POLL_LEASE`` seconds.
    """

    def __init__(self) -> None:
        self._held: dict[int, tuple[PollRun, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def holding(self, run: PollRun) -> Iterator[None]:
        with self._lock:
            self._held[run.pk] = (run, time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="posture-lease-heartbeat", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(run.pk, None)

    def _beat(self) -> None:
        every = settings.POLL_LEASE_SECONDS / 3
        while True:
            time.sleep(every)
            with self._lock:
                due = [run for run, since in self._held.values() if time.monotonic() - since >= every]
            for run in due:
                try:
                    run.renew()
                except DatabaseError as exc:
                    # The lease runs out unless a later beat gets through; the poll finds
                    # out when it stores its result.
                    log.warning("could not renew the lease of poll %s: %s", run.pk, exc)
                    connection.close()


HEARTBEAT = Heartbeat()


def poll(host: DockerHost, token: str | None = None, *, due_at: datetime | None = None, interrupted: str = "") -> PollRun | None:
    """Poll ``host`` now. None when another poll of this host holds the lease.

    Every failure — the engine, the answer, the rules, storing the result, the time
    limit — ends the run as failed with its cause, and backs the host off. The one
    exception is the database itself going away (``DATABASE_UNAVAILABLE``): that is
    raised for the task to retry, and the run's lease simply runs out.
    ``run.retryable`` says whether trying again soon could help.
    """
    token = token or uuid.uuid4().hex
    run = PollRun.start(host, token, due_at=due_at, interrupted=interrupted)
    if run is None:
        return None
    with HEARTBEAT.holding(run):
        doing = "reading the engine"
        try:
            # The stored snapshot is loaded only if the engine's lists changed (to reuse inspects).
            previous = (lambda: host.snapshot.snapshot()) if host.snapshot else None  # noqa: E731 - loaded lazily
            with credentials(host) as creds:
                since = host.answers_digest if _up_to_date(host) else ""
                snap = collect(creds.target, previous, budget=poll_budget(), unchanged_since=since)
                pinned = creds.pinned_host_keys()
            key = "" if isinstance(snap, Unchanged) else evaluation_key(snap.digest(), host)
            if isinstance(snap, Unchanged) or key == host.evaluated:
                doing = "storing the poll"
                host.record_unchanged(snap, run, pinned_host_keys=pinned)
            else:
                doing = "evaluating the rules"
                evaluation = evaluate_all(snap, host_name=host.name)
                doing = "storing the result"
                host.apply_snapshot(snap, evaluation, run, key=key, pinned_host_keys=pinned)
            # The success path: what follows a good poll (alerts) is enqueued by the task.
        except DATABASE_UNAVAILABLE:
            raise
        except ENGINE_FAILURES as exc:
            run.retryable = bool(getattr(exc, "transient", False))
            host.record_failure(run, str(exc), status=failure_status(exc), transient=run.retryable)
        except SoftTimeLimitExceeded:
            run.retryable = True
            message = f"the poll did not finish within its {settings.POLL_SOFT_TIME_LIMIT}s time limit ({doing})"
            host.record_failure(run, message, status=HostStatus.UNREACHABLE, transient=True)
        except Exception as exc:
            # A parser, rule-engine or storage bug, a constraint, a lost lease: the run
            # says which step failed and how, and the host backs off like any failure.
            log.exception("poll of %s failed %s", host.name, doing)
            run.retryable = isinstance(exc, LeaseLost)
            host.record_failure(run, f"{doing} failed: {type(exc).__name__}: {printable(truncate(str(exc), 500))}", status=HostStatus.ERROR)
    return run


def test_connection(host: DockerHost) -> tuple[bool, str]:
    """Connect with the host's (unsaved) settings and read ``/version``. Nothing is stored:
    not even the ssh host key the server showed, since the form may never be saved."""
    try:
        with credentials(host) as creds:
            return True, probe(creds.target, budget=Budget.for_probe(settings.PROBE_DEADLINE))
    except ENGINE_FAILURES as exc:
        return False, str(exc)
