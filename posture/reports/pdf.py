"""HTML → PDF with WeasyPrint, allowed to read the project's static files and nothing else."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.template.loader import render_to_string
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse


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


def render_pdf(context: dict[str, Any], template: str = "posture/report.html") -> RenderedPDF:
    html = render_to_string(template, context)
    document = HTML(string=html, base_url=f"file://{Path(settings.BASE_DIR) / 'static'}/", url_fetcher=StaticOnlyFetcher(static_roots())).render()
    return RenderedPDF(data=document.write_pdf(), pages=len(document.pages))
