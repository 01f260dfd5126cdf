"""HTML → PDF with WeasyPrint, allowed to read the project's static files and nothing else.

A report is rendered in parts, side by side, and joined (``assemble.py``): layout is
where WeasyPrint spends its time, it runs on one core, and its memory grows with the
document. So the hosts' sections go in chunks of ``HOSTS_PER_PART`` to up to
``POSTURE_REPORT_WORKERS`` forked children (``forked.py``), beside the summary, the back
matter and the front part (cover and contents) with placeholder page numbers, which gives
its length; then the front again, with the page numbers the other parts ended up with,
beside the footers, which need the page count and are laid over the joined pages. The HTML of every part is rendered
here, in the parent, so only WeasyPrint runs in the children (and the database is
never touched from one).
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from . import assemble, forked

# Hosts per part: small enough to spread over the workers and keep each child's memory
# low, large enough that WeasyPrint's start-up per part (styles, fonts) stays a small share.
HOSTS_PER_PART = 10
# Page numbers in the contents while they are unknown: as wide as the real ones, so the
# contents take the same number of pages.
PLACEHOLDER_PAGE = "000"


class StaticOnlyFetcher(URLFetcher):
    """Refuses the network, redirects, data from anywhere else on disk: a report's
    content comes from engines, and an engine's label must not make the renderer
    read /etc/passwd or call a metadata service."""

    def __init__(self, roots: list[Path]) -> None:
        super().__init__(allowed_protocols=["file"], allow_redirects=False)
        self.roots = [r.resolve() for r in roots]

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> URLFetcherResponse:
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"report renderer refused {url!r}: only the project's static files may be read")
        path = Path(unquote(parts.path)).resolve()
        if not any(path.is_relative_to(root) for root in self.roots) or not path.is_file():
            raise ValueError(f"report renderer refused {url!r}: outside the static files")
        return URLFetcherResponse(url, body=path.read_bytes(), headers={"Content-Type": mimetypes.guess_type(path.name)[0] or "application/octet-stream"})


def static_roots() -> list[Path]:
    return [Path(settings.BASE_DIR) / "static"]


@dataclass(frozen=True)
class RenderedPDF:
    data: bytes
    pages: int


@dataclass(frozen=True)
class Part:
    """One part, rendered: its PDF, its length, and the page (0-based) each anchor is on."""

    data: bytes
    pages: int
    anchors: dict[str, int] = field(default_factory=dict)


def html_to_pdf(html: str) -> Part:
    document = HTML(string=html, base_url=f"file://{Path(settings.BASE_DIR) / 'static'}/", url_fetcher=StaticOnlyFetcher(static_roots())).render()
    anchors: dict[str, int] = {}
    for number, page in enumerate(document.pages):
        for name in page.anchors:
            anchors.setdefault(name, number)
    return Part(data=document.write_pdf(), pages=len(document.pages), anchors=anchors)


def workers() -> int:
    return settings.REPORT_WORKERS or os.cpu_count() or 1


def render_pdf(context: dict[str, Any], template: str = "posture/report.html") -> RenderedPDF:
    def part(name: str, **extra: Any) -> str:
        body = render_to_string(f"{template}#{name}", context | extra)
        return _document(body, title=context["title"])

    sections = context["sections"]
    chunks = [sections[i : i + HOSTS_PER_PART] for i in range(0, len(sections), HOSTS_PER_PART)]
    hosts = [part("hosts", sections=chunk) for chunk in chunks]
    # The front's length (with placeholder page numbers) places every other part. The
    # longest parts go first, so the workers finish together.
    first = [*hosts, part("summary"), part("front", toc=_contents(context, None)), part("back")]
    _warm_up()
    *hosts_done, summary, front, back = forked.run([lambda html=html: html_to_pdf(html) for html in first], workers=workers())
    rendered = [summary, *hosts_done, back]
    pages_at: dict[str, int] = {}
    offset = front.pages
    for done in rendered:
        for anchor, page in done.anchors.items():
            pages_at.setdefault(anchor, offset + page + 1)
        offset += done.pages
    final = [part("front", toc=_contents(context, pages_at)), _document("<div></div>" * offset, stylesheet="report-footers.css")]
    front, footers = forked.run([lambda html=html: html_to_pdf(html) for html in final], workers=workers())
    if front.pages + sum(p.pages for p in rendered) != offset:
        raise RuntimeError(f"the contents took {front.pages} pages with their page numbers, not as many as without")
    joined = assemble.join(front.data, [p.data for p in rendered])
    return RenderedPDF(data=assemble.lay_footers(joined, footers.data), pages=offset)


def _warm_up() -> None:
    """Load WeasyPrint's fonts once, here, rather than in every child."""
    html_to_pdf(_document("<h2>Posture</h2><p><strong>·</strong> <code>-</code></p><pre>-</pre>"))


def _document(body: str, *, title: str = "", stylesheet: str = "report.css") -> str:
    return render_to_string(
        "posture/report_part.html", {"title": title, "stylesheet": stylesheet, "body": mark_safe(body)}
    )  # our own templates' output, escaped there


def _contents(context: dict[str, Any], pages_at: dict[str, int] | None) -> list[dict[str, Any]]:
    """The contents' entries: anchor, label, page (a placeholder until known), indent."""
    entries = [("summary", "Executive summary", False), ("changes", "What changed", False)]
    entries += [(f"host-{s.host.pk}", f"Host {s.host.name}", True) for s in context["sections"]]
    entries += [("exceptions", "Exceptions", False), ("accepted", "Accepted risks", False), ("appendix", "Appendix: rules", False)]
    return [
        {"anchor": anchor, "label": label, "sub": sub, "page": PLACEHOLDER_PAGE if pages_at is None else pages_at.get(anchor, "")}
        for anchor, label, sub in entries
    ]
