"""``manage.py findings`` with the explorer's filters, streamed as JSON, CSV or SARIF.

Options are named like the explorer's query parameters and go through the same
``FindingFilter``, so the same filter gives the same rows here and on ``/findings/``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from posture.exports import FORMATS
from posture.models import FilterError, Finding, FindingFilter, Severity
from posture.models.filters import STATUSES


def add_filter_arguments(parser: CommandParser) -> None:
    """The explorer's filters as options (``--rule`` ↔ ``?rule=``, ``--resolved-since`` ↔ ``?resolved_since=``)."""
    parser.add_argument("--rule", action="append", default=[], help="rule id (repeatable)")
    parser.add_argument("--cis", help="CIS Docker Benchmark item, e.g. 5.10")
    parser.add_argument("--severity", choices=list(Severity), help="at least this severity")
    parser.add_argument("--status", choices=STATUSES, default="open")
    parser.add_argument("--host", action="append", default=[], help="host name (repeatable)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="host label (repeatable; all must match)")
    parser.add_argument("--image", metavar="GLOB", help="container image, * and ? as wildcards")
    parser.add_argument("--project", metavar="NAME", help="compose project")
    parser.add_argument("--name", metavar="GLOB", help="container name, * and ? as wildcards")
    parser.add_argument("--since", metavar="PERIOD", help="first seen within 7d / 24h / 2w, or since YYYY-MM-DD")
    parser.add_argument("--resolved-since", metavar="PERIOD", help="resolved within a period (use with --status resolved or all)")
    parser.add_argument("--q", metavar="TEXT", help="free text in the title or subject")
    parser.add_argument("--exception", metavar="ID", help="covered by this exception now")


def filter_from_options(options: dict[str, Any]) -> FindingFilter:
    params = {key: options.get(key) for key in ("rule", "cis", "severity", "status", "host", "label", "image", "project", "name", "since", "q", "exception")}
    params["resolved_since"] = options.get("resolved_since")
    try:
        return FindingFilter.parse(params)
    except FilterError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = "Write findings to stdout for scripts, with the explorer's filters."

    def add_arguments(self, parser: CommandParser) -> None:
        add_filter_arguments(parser)
        parser.add_argument("--format", choices=sorted(FORMATS), default="json")

    def handle(self, *args: Any, **options: Any) -> None:
        selection = filter_from_options(options)
        findings = selection.apply(Finding.objects.all()).for_explorer()
        for chunk in FORMATS[options["format"]].write(findings):
            self.stdout.write(chunk, ending="")
