"""Server-rendered SVG charts, shared by pages and PDF reports. Values are numbers;
any text is escaped by format_html."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from posture import risk
from posture.rules import Severity


def _last_point(points: str) -> list[str]:
    """The x and y of the last point of an SVG ``points`` list, to mark "now"."""
    return points.rsplit(" ", 1)[-1].split(",")


def sparkline(scores: Sequence[int], *, width: int = 120, height: int = 28, label: str = "risk trend") -> SafeString:
    if not scores:
        return format_html('<svg class="spark" width="{}" height="{}" role="img" aria-label="{}: no data"></svg>', width, height, label)
    values = list(scores)[-30:]
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / 100) * (height - 4):.1f}" for i, v in enumerate(values))
    last_x, last_y = _last_point(points)
    return format_html(
        '<svg class="spark" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="{}: {} to {}">'
        '<polyline fill="none" stroke="#334155" stroke-width="1.5" points="{}"/>'
        '<circle cx="{}" cy="{}" r="2.5" fill="#334155"/></svg>',
        width,
        height,
        width,
        height,
        label,
        values[0],
        values[-1],
        points,
        last_x,
        last_y,
    )


def risk_history(samples: Sequence[tuple[datetime, int]], *, width: int = 640, height: int = 180) -> SafeString:
    """A line chart of score over time with 0/50/100 gridlines and first/last dates."""
    pad_l, pad_b, pad_t = 34, 22, 8
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    grid = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#cbd5e1"/><text x="4" y="{}" font-size="10" fill="#475569">{}</text>',
        ((pad_l, pad_t + plot_h * (1 - v / 100), width - 8, pad_t + plot_h * (1 - v / 100), pad_t + plot_h * (1 - v / 100) + 3, v) for v in (0, 50, 100)),
    )
    if not samples:
        body = format_html('<text x="{}" y="{}" font-size="12" fill="#475569">No polls yet</text>', pad_l + 10, pad_t + plot_h / 2)
    else:
        t0, t1 = samples[0][0].timestamp(), samples[-1][0].timestamp()
        span = max(t1 - t0, 1)
        pts = " ".join(f"{pad_l + (t.timestamp() - t0) / span * plot_w:.1f},{pad_t + plot_h * (1 - s / 100):.1f}" for t, s in samples)
        body = format_html(
            '<polyline fill="none" stroke="#b91c1c" stroke-width="2" points="{}"/>'
            '<circle cx="{}" cy="{}" r="3" fill="#b91c1c"><title>{}: {}</title></circle>'
            '<text x="{}" y="{}" font-size="10" fill="#475569">{}</text>'
            '<text x="{}" y="{}" font-size="10" fill="#475569" text-anchor="end">{}</text>',
            pts,
            *_last_point(pts),
            samples[-1][0].strftime("%d %b %H:%M"),
            samples[-1][1],
            pad_l,
            height - 6,
            samples[0][0].strftime("%d %b %H:%M"),
            width - 8,
            height - 6,
            samples[-1][0].strftime("%d %b %H:%M"),
        )
    return format_html(
        '<svg class="chart" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="Risk score over time">{}{}</svg>',
        width,
        height,
        width,
        height,
        grid,
        body,
    )


def severity_bar(counts: dict[str, int], *, width: int = 320, height: int = 18) -> SafeString:
    """A stacked bar of open findings by severity; labelled, so colour is not the only cue."""
    total = sum(counts.get(s, 0) for s in Severity) or 1
    x = 0.0
    parts = []
    for sev in Severity:
        n = counts.get(sev, 0)
        if n:
            w = width * n / total
            parts.append((f"{x:.1f}", f"{w:.1f}", height, sev.colour, f"{n} {sev}"))
            x += w
    rects = format_html_join("", '<rect x="{}" y="0" width="{}" height="{}" fill="{}"><title>{}</title></rect>', parts)
    summary = ", ".join(p[4] for p in parts) or "no open findings"
    return format_html('<svg class="bar" width="{}" height="{}" role="img" aria-label="{}">{}</svg>', width, height, summary, rects)


# Band colours, mildest to worst; "none" is neutral.
BAND_COLOURS = {"none": "#94a3b8", "low": Severity.LOW.colour, "moderate": "#a16207", "high": Severity.HIGH.colour, "severe": Severity.CRITICAL.colour}


def risk_bands(counts: dict[str, int], *, width: int = 260, row: int = 18) -> SafeString:
    """How many hosts fall in each risk band (posture/risk.py BANDS), one labelled bar each."""
    most = max(counts.values(), default=0) or 1
    label_w, count_w = 110, 44
    bar_w = width - label_w - count_w
    rows = []
    for i, (name, low, high) in enumerate(risk.BANDS):
        n = counts.get(name, 0)
        y = i * row
        rows.append(
            (
                y + 13,
                f"{name} ({low}–{high})" if low != high else f"{name} ({low})",
                label_w,
                y + 3,
                f"{bar_w * n / most:.1f}",
                BAND_COLOURS[name],
                label_w + bar_w + 4,
                y + 13,
                n,
            )
        )
    body = format_html_join(
        "",
        '<text x="0" y="{}" font-size="11" fill="#334155">{}</text><rect x="{}" y="{}" width="{}" height="12" fill="{}"/>'
        '<text x="{}" y="{}" font-size="11" fill="#334155">{}</text>',
        rows,
    )
    height = row * len(risk.BANDS)
    summary = ", ".join(f"{counts.get(name, 0)} {name}" for name, _low, _high in risk.BANDS)
    return format_html('<svg class="bands" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="Hosts by risk band: {}">{}</svg>',
                       width, height, width, height, summary, body)  # fmt: skip
