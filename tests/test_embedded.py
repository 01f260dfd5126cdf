"""`make run`'s embedded default, for real: SQLite and the filesystem broker under a var
directory, with gunicorn, a Celery worker, Celery beat and the watcher started by `manage.py serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .waiting import wait_for
from .web import serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_web_worker_beat_and_watcher_run_together_without_any_server(engine, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "POSTURE_CREDENTIALS_KEY")}
    env.update(
        POSTURE_VAR_DIR=str(tmp_path / "var"),
        POSTURE_DISPATCH_EVERY="1",
        POSTURE_ADMIN_PASSWORD="embedded-admin-pass-1",
        POSTURE_LOCAL_ENGINE=engine.url,
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    boot = subprocess.run([*manage, "bootstrap"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    assert "Created user 'admin'" in boot and "Registered the local engine as 'local'" in boot
    assert (tmp_path / "var" / "secret_key").exists() and (tmp_path / "var" / "credentials.key").exists()

    with serving(env, tmp_path, "embedded-admin-pass-1") as served:
        session, base = served.session, served.base
        # Beat dispatches, the worker polls over the filesystem broker, the page shows it.
        wait_for(lambda: "✓ OK" in session.get(f"{base}/", timeout=5).text, timeout=90, interval=1, what="the first scheduled poll on the fleet page")
        assert "local" in session.get(f"{base}/hosts/local/", timeout=5).text
        # The watcher runs too, holding the local engine's event stream.
        wait_for(
            lambda: "watched</span> since" in session.get(f"{base}/hosts/local/", timeout=5).text, timeout=60, interval=1, what="the watcher on the host page"
        )
    assert "Posture on http://127.0.0.1" in served.output
