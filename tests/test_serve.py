"""``manage.py serve`` runs every process Posture needs and restarts the ones that die.

The real thing, killed and restarted under load, is in the chaos suite (tests/test_chaos.py)."""

from __future__ import annotations

import io
import sys
import time

from posture.management.commands.serve import RESTART_MAX, RESTART_MIN, Child, Command, commands
from posture.models.querysets import FAILING_QUEUE, POLLS_QUEUE


def queues(cmd: list[str]) -> set[str]:
    return set(cmd[cmd.index("-Q") + 1].split(","))


def test_every_queue_has_a_worker_and_failing_hosts_have_their_own():
    cmds = commands(bind="127.0.0.1", port=8000, concurrency=2)
    assert {"web", "worker", "worker-failing", "beat"} <= set(cmds)
    assert {POLLS_QUEUE, "reports"} <= queues(cmds["worker"]) and FAILING_QUEUE not in queues(cmds["worker"])
    assert FAILING_QUEUE in queues(cmds["worker-failing"])
    assert cmds["worker-failing"][cmds["worker-failing"].index("--concurrency") + 1] == "1"
    assert all("prefork" in cmds[w] for w in ("worker", "worker-failing"))  # hard time limits
    assert not any("-B" in cmd for cmd in cmds.values())  # beat is never embedded in a worker


def test_a_child_that_exits_is_restarted_after_a_back_off_that_doubles():
    command = Command(stdout=io.StringIO(), stderr=io.StringIO())
    child = Child("crashy", [sys.executable, "-c", "raise SystemExit(3)"])
    child.start()
    child.proc.wait()
    command._supervise([child])
    assert child.restart_at is not None and child.delay == 2 * RESTART_MIN
    assert "crashy exited with 3; restarting it in 1s" in command.stderr.getvalue()
    time.sleep(RESTART_MIN + 0.1)
    command._supervise([child])
    assert child.restarts == 1 and child.restart_at is None
    child.proc.wait()
    command._supervise([child])  # dies again at once: the next wait is longer
    assert "restarting it in 2s" in command.stderr.getvalue() and child.delay == 4 * RESTART_MIN <= RESTART_MAX
