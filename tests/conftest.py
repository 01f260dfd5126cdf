"""Fixtures every test file reuses: real engines, a real Celery worker, personas.

Two layers. A test that uses a real part (a Docker engine, Redis, a Celery worker, sshd,
Chromium, or PostgreSQL through ``need()``) is marked ``real`` here at collection, from
the fixtures it uses; everything else is the fast layer (``make test-fast``, i.e.
``pytest -m "not real"`` on SQLite). A test that reaches ``need()`` without the mark
fails, so a new real-part test cannot hide in the fast layer.

Under ``CI=true`` a test that needs a real part fails instead of skipping when the part
is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.test import override_settings

from posture.models import DockerHost

from .engines import EngineUnavailable, TestEngine
from .pki import CA
from .sshd import Sshd, SshdUnavailable, start_sshd

CI = os.environ.get("CI", "").lower() == "true"

# Fixtures that bring up a real part; a test using any of them (directly or through
# another fixture) is marked ``real``.
REAL_FIXTURES = frozenset(
    {
        "engine_session",
        "second_engine_session",
        "exposed_engine_session",
        "tls_engine_session",
        "sshd",
        "redis_url",
        "celery_worker",
        "browser",
    }
)
REAL_MARKS = ("real", "slow", "browser")
_running: list[pytest.Item] = []  # the test being set up or run, for need()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())) or any(item.get_closest_marker(m) for m in REAL_MARKS):
            item.add_marker(pytest.mark.real)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def need(reason: str) -> None:
    """Skip locally, fail in CI: CI must exercise every real part. Only a test marked
    ``real`` may need one; any other is a real-part test that slipped into the fast layer."""
    if _running and not _running[-1].get_closest_marker("real"):
        pytest.fail(
            f"{_running[-1].nodeid} needs a real part ({reason}) but is not marked real: use the fixture that provides the part, or @pytest.mark.real",
            pytrace=False,
        )
    if CI:
        pytest.fail(f"real part missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    """Personas log in in most page tests; PBKDF2's million rounds would dominate the
    fast layer. Hashing itself is Django's, not ours to test."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _fresh_rule_counts() -> None:
    """The rules page keeps its counts in the cache for a minute; each test counts its own rows."""
    from django.core.cache import cache

    from posture.views.rules import HITS_CACHE_KEY

    cache.delete(HITS_CACHE_KEY)


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
        app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        shutdown_timeout=30,
        loglevel="WARNING",
        queues=["celery", "reports", "notify", "polls-failing"],
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
