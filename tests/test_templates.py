"""Templates stay readable in a diff: a change to one cell or condition shows as one short line."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONGEST = 160


def test_no_template_line_is_longer_than_a_diff_can_show():
    long_lines = [
        f"{path.relative_to(ROOT)}:{number}: {len(line)}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if len(line) > LONGEST
    ]
    assert long_lines == []
