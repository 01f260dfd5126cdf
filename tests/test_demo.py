"""`make demo` for real, the way `test_embedded.py` runs `make run`: the simulated fleet
registered with its history, then `serve --simulate` (gunicorn, a Celery worker, Celery
beat and the simulator) on SQLite and the filesystem broker under a var directory of its
own, no Docker anywhere. The fleet page is populated, live polls land, Ctrl-C stops all."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .waiting import wait_for
from .web import serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
HOSTS = 5


def test_make_demo_runs_the_dashboard_on_a_simulated_fleet_with_history(tmp_path):
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    # What this test runs is what make demo runs (with fewer hosts and less history).
    for step in (
        "POSTURE_VAR_DIR=$(CURDIR)/var/demo",
        "manage.py migrate",
        "manage.py demo --hosts 50",
        "manage.py bootstrap",
        "manage.py serve --simulate 50",
    ):
        assert step in recipe or step in (ROOT / "Makefile").read_text(), step
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "POSTURE_CREDENTIALS_KEY")}
    env.update(POSTURE_VAR_DIR=str(var), POSTURE_DISPATCH_EVERY="1", POSTURE_ADMIN_PASSWORD="demo-admin-pass-1", PYTHONUNBUFFERED="1")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    made = subprocess.run([*manage, "demo", "--hosts", str(HOSTS), "--days", "2"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    assert f"Registered {HOSTS} hosts" in made
    again = subprocess.run([*manage, "demo", "--hosts", str(HOSTS)], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    assert "there already" in again  # made once
    boot = subprocess.run([*manage, "bootstrap"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    assert "Created user 'admin'" in boot and "local engine" not in boot  # the demo fleet only
    database = var / "posture.sqlite3"
    assert database.exists() and (var / "secret_key").exists()

    def live_polls() -> int:
        with sqlite3.connect(database, timeout=20) as db:
            return db.execute("SELECT COUNT(*) FROM posture_pollrun WHERE token != 'demo-history' AND status = 'ok'").fetchone()[0]

    with serving(env, tmp_path, "demo-admin-pass-1", "--simulate", str(HOSTS)) as served:
        assert all((var / "simulate" / f"sim-{i:04d}.sock").is_socket() for i in range(1, HOSTS + 1))
        fleet = served.session.get(f"{served.base}/", timeout=10).text
        assert f"<strong>{HOSTS}</strong> hosts" in fleet and all(f"sim-{i:04d}" in fleet for i in range(1, HOSTS + 1))
        assert "simulated=true" in fleet
        host = served.session.get(f"{served.base}/hosts/sim-0001/", timeout=10).text
        assert "Risk history" in host and "<polyline" in host  # a trend from the generated history
        # The live fleet is polled: beat dispatches, the worker reads the simulator's sockets.
        wait_for(lambda: live_polls() >= 1, timeout=120, interval=1, what="a live poll of the simulated fleet")
    assert "simulator" in served.output and "Simulator stopped; sockets removed." in served.output
    assert not list((var / "simulate").glob("*.sock"))
    leftovers = subprocess.run(["pgrep", "-f", f"manage.py simulate --hosts {HOSTS} "], capture_output=True, text=True).stdout
    assert not leftovers.strip()
