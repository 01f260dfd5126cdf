"""``manage.py report generate [--schedule NAME] [--label KEY=VALUE ...] [--days N] --out FILE.pdf``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from posture.labels import parse_label_list
from posture.models import ReportSchedule
from posture.reports import context
from posture.reports.pdf import render_pdf


class Command(BaseCommand):
    help = "Render a report now and write it to a file (nothing is stored or mailed)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        gen = sub.add_parser("generate")
        gen.add_argument("--schedule", help="use this schedule's scope and period length")
        gen.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        gen.add_argument("--days", type=int, default=7, help="period length in days, ending now")
        gen.add_argument("--out", required=True)

    def handle(self, *args: Any, action: str, schedule: str | None, label: list[str], days: int, out: str, **opts: Any) -> None:
        end = timezone.now()
        try:
            labels = parse_label_list(label)
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from None
        title = "On-demand report"
        start = end - timedelta(days=days)
        if schedule:
            found = ReportSchedule.objects.filter(name=schedule).first()
            if found is None:
                raise CommandError(f"no report schedule named {schedule!r}")
            labels, title = {**found.labels, **labels}, found.name
            start, end = found.period_before(end)
        target = Path(out)
        if not target.parent.is_dir():
            raise CommandError(f"directory {target.parent} does not exist")
        pdf = render_pdf(context.build(labels=labels, start=start, end=end, title=title))
        target.write_bytes(pdf.data)
        self.stdout.write(f"wrote {target} ({pdf.pages} pages, {len(pdf.data)} bytes)")
