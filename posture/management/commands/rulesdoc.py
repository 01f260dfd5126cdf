"""``manage.py rulesdoc``: docs/rules.md, generated from the catalog."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from posture.rules import KNOWN_GAPS, RULES


def render() -> str:
    lines = [
        "# Rule catalog",
        "",
        "Generated from `posture/rules/` by `python manage.py rulesdoc --write`; do not edit by hand.",
        "",
        f"{len(RULES)} rules. CIS references are to the CIS Docker Benchmark v1.6.0. "
        "`api` rules are proven by the Engine API alone; `host-access` items need a shell on the host.",
        "",
        "| Rule | CIS | Severity | Subject | Check | Title |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| [`{r.id}`](#{r.id}) | {r.cis or '—'} | {r.severity.value} | {r.subject.value} | {r.verification.value} | {r.title} |" for r in RULES]
    for r in RULES:
        lines += [
            "",
            f"## {r.id}",
            "",
            f"**{r.title}** — {r.severity.value}, {r.subject.value}" + (f", CIS {r.cis}" if r.cis else "") + f", family `{r.family}`.",
            "",
            r.rationale,
        ]
        if r.beyond_cis:
            lines += ["", f"Beyond CIS: {r.beyond_cis}"]
    lines += ["", "## Known gaps (need host access)", "", "| CIS | Check | Why the API cannot see it |", "|---|---|---|"]
    lines += [f"| {g['cis'] or '—'} | {g['title']} | {g['why']} |" for g in KNOWN_GAPS]
    return "\n".join(lines) + "\n"


class Command(BaseCommand):
    help = "Print (or --write) docs/rules.md from the rule catalog."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--write", action="store_true")

    def handle(self, *args: Any, write: bool, **opts: Any) -> None:
        text = render()
        if write:
            (settings.BASE_DIR / "docs" / "rules.md").write_text(text)
        else:
            self.stdout.write(text, ending="")
