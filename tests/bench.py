"""``make bench`` (``python -m tests.bench``): every benchmark, one run, docs/benchmarks.md.

Each ``tests/bench_*.py`` module that has ``run() -> str`` is a section: run in the order
of ``ORDER`` (then any other, by name), against a database of its own (``posture_bench``, ``_N`` for test slot N,
emptied before each section) on the real parts — PostgreSQL, Redis, Docker engines and the
simulator as a section needs them. A section that fails is written with its error and the
others still run. ``python -m tests.bench bench_pages`` runs the sections named and
prints them, leaving the file alone; ``--write`` also puts them in place of their old
text in docs/benchmarks.md (each section's footer names its module and date).

Numbers are wall-clock unless a section says otherwise, on a machine other work may share:
each section is written with the load average before it. Nothing here asserts a time:
targets are read from the file, not enforced in tests.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posture.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import get_runner  # noqa: E402
from django.utils import timezone  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Pipeline first (it wants the machine to itself), then pages, storage and the report, then
# the parts' own numbers.
ORDER = ("bench_pipeline", "bench_pages", "bench_storage", "bench_report", "bench_explorer", "bench_watcher", "bench_core", "bench_simulator")


def sections(names: list[str] | None = None) -> list[tuple[str, Callable[[], str]]]:
    found = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    chosen = names or [*(n for n in ORDER if n in found), *(n for n in found if n not in ORDER)]
    modules = [(name, importlib.import_module(f"tests.{name}")) for name in chosen]
    return [(name, module.run) for name, module in modules if callable(getattr(module, "run", None))]


def machine() -> str:
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0].split()[0]
    return f"{platform.machine()}, {os.cpu_count()} cores, {int(memory) // 1024 // 1024} GiB, Linux {platform.release()}, Python {platform.python_version()}, PostgreSQL {postgres}"


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str]) -> int:
    update = "--write" in argv
    argv = [a for a in argv if a != "--write"]
    # Never the real database, nor another checkout's bench (POSTURE_TEST_SLOT, as the tests).
    slot = os.environ.get("POSTURE_TEST_SLOT", "0")
    settings.DATABASES["default"]["TEST"]["NAME"] = "posture_bench" + (f"_{slot}" if slot != "0" else "")
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    written: dict[str, str] = {}
    try:
        about = machine()
        for name, run in sections(argv or None):
            call_command("flush", interactive=False, verbosity=0)  # each section starts from an empty database
            before, started = load(), time.perf_counter()
            print(f"== {name} (load {before})", flush=True)
            try:
                text = run().strip()
            except Exception:  # the other sections still run
                text = f"## {name}\n\nFailed:\n\n```\n{traceback.format_exc()}```"
            text += (
                f"\n\n<sub>`tests/{name}.py`, {timezone.now():%Y-%m-%d}, {time.perf_counter() - started:.0f} s, "
                f"load average before it {before} (1 / 5 / 15 min).</sub>"
            )
            print(text, flush=True)
            written[name] = text
    finally:
        runner.teardown_databases(old)
    if not argv:
        write(about, list(written.values()))
    elif update:
        replace(written)
    return 0


FOOTER = re.compile(r"^<sub>`tests/(bench_\w+)\.py`.*</sub>$", re.MULTILINE)


def replace(texts: dict[str, str]) -> None:
    """Put ``texts`` in place of the sections of the same modules in docs/benchmarks.md
    (a section runs from the end of the previous one to its footer); new ones at the end."""
    path = ROOT / "docs" / "benchmarks.md"
    document = path.read_text()
    start = document.index("\n## ")  # the header ends where the first section starts
    head, sections, position = document[: start + 1], [], start + 1
    for footer in FOOTER.finditer(document):
        sections.append((footer.group(1), document[position : footer.end()].strip()))
        position = footer.end()
    kept = [texts.pop(name, text) for name, text in sections]
    path.write_text(head + "\n\n".join([*kept, *texts.values()]) + "\n")


def write(about: str, texts: list[str]) -> None:
    body = "\n\n".join(texts)
    (ROOT / "docs" / "benchmarks.md").write_text(f"""# Benchmarks

Produced by `make bench` (`python -m tests.bench`: every `tests/bench_*.py` with a `run()`, against
PostgreSQL, Redis, Docker engines and the simulator) on {timezone.now():%Y-%m-%d}, on {about}.
The machine may be shared: each section says the load average it started under. Re-run it
after changing what a section measures (`python -m tests.bench --write bench_NAME` re-runs
one section in place), and commit the new file.

{body}
""")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
