"""Fixtures every test file reuses: real engines, a real Celery worker, personas.

Under ``CI=true`` a test that needs a real part (engine, PostgreSQL, Redis, Chromium)
fails instead of skipping when the part is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import Group, User

from posture.models import DockerHost

from .engines import EngineUnavailable, TestEngine
from .pki import CA
from .sshd import Sshd, SshdUnavailable, start_sshd

CI = os.environ.get("CI", "").lower() == "true"


def need(reason: str) -> None:
    """Skip locally, fail in CI: CI must exercise every real part."""
    if CI:
        pytest.fail(f"real part missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _start(name: str, index: int, extra: list[str] | None = None, external: str = "") -> TestEngine:
    try:
        return TestEngine(name=name, index=index, extra_args=extra or [], external_url=external).start()
    except EngineUnavailable as exc:
        need(f"cannot start a Docker engine: {exc}")
        raise


@pytest.fixture(scope="session")
def engine_session() -> Iterator[TestEngine]:
    eng = _start("main", 0, external=os.environ.get("POSTURE_TEST_ENGINE_URL", ""))
    yield eng
    eng.stop()


@pytest.fixture
def engine(engine_session: TestEngine) -> TestEngine:
    """The main test engine, emptied of what earlier tests left before the test."""
    return engine_session.reset()


@pytest.fixture(scope="session")
def second_engine_session() -> Iterator[TestEngine]:
    eng = _start("second", 1, external=os.environ.get("POSTURE_TEST_ENGINE2_URL", ""))
    yield eng
    eng.stop()


@pytest.fixture
def second_engine(second_engine_session: TestEngine) -> TestEngine:
    return second_engine_session.reset()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def exposed_engine_session() -> Iterator[TestEngine]:
    """An engine configured badly on purpose: plain-TCP API on loopback, an insecure
    registry, swarm mode; and user-namespace remapping, for the silent side of 2.9."""
    api_port, swarm_port = free_port(), free_port()
    eng = _start("exposed", 2, ["-H", f"tcp://127.0.0.1:{api_port}", "--insecure-registry", "10.9.0.0/16", "--userns-remap=default"])
    eng.tcp_url = f"tcp://127.0.0.1:{api_port}"
    eng.client.swarm.init(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{swarm_port}")
    yield eng
    with contextlib.suppress(Exception):
        eng.client.swarm.leave(force=True)
    eng.stop()


@pytest.fixture
def exposed_engine(exposed_engine_session: TestEngine) -> TestEngine:
    return exposed_engine_session.reset()


@pytest.fixture(scope="session")
def tls_engine_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestEngine]:
    """An engine that serves its API over TLS on loopback and requires client certificates."""
    ca = CA(tmp_path_factory.mktemp("pki"))
    server = ca.issue("engine", server=True)
    port = free_port()
    eng = _start(
        "tls", 3, ["--tlsverify", "--tlscacert", str(ca.path), "--tlscert", str(server.cert), "--tlskey", str(server.key), "-H", f"tcp://127.0.0.1:{port}"]
    )
    eng.tcp_url, eng.ca = f"tcp://127.0.0.1:{port}", ca
    yield eng
    eng.stop()


@pytest.fixture
def tls_engine(tls_engine_session: TestEngine) -> TestEngine:
    return tls_engine_session.reset()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as exc:
        need(str(exc))
        raise
    yield server
    server.stop()


@pytest.fixture
def make_host(db: None) -> Callable[..., DockerHost]:
    def make(name: str, eng: TestEngine | None = None, url: str = "", **fields: object) -> DockerHost:
        return DockerHost.objects.create(name=name, url=url or eng.url, **fields)

    return make


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        need("REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        need(f"Redis at {url} does not answer: {exc}")
    return url


@pytest.fixture
def celery_worker(transactional_db: None, redis_url: str) -> Iterator[object]:
    """A real Celery worker (solo pool, in a thread) consuming from Redis."""
    from celery.contrib.testing.worker import start_worker

    from posture.celery import app

    app.control.purge()
    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING", queues=["celery", "reports", "notify"]
    ) as worker:
        yield worker


# --- personas -------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


def _user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username, f"{username}@example.test", PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def admin(db: None) -> User:
    return _user("alice-admin", "Admin")


@pytest.fixture
def analyst(db: None) -> User:
    return _user("arthur-analyst", "Analyst")


@pytest.fixture
def viewer(db: None) -> User:
    return _user("vera-viewer", "Viewer")


@pytest.fixture
def outsider(db: None) -> User:
    """Logged in, but holds no role."""
    return _user("oscar-outsider", None)
