"""Generate one report: gather, render, store, mail."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMessage

from posture.models import Report

from . import context
from .pdf import render_pdf

log = logging.getLogger(__name__)


class ReportNotStored(OSError):
    """The PDF was rendered but could not be written (a read-only or full reports directory)."""


def generate(report: Report, token: str) -> Report:
    """Render, store and mail one report, for the task (``token``) that claims it."""
    if not report.claim(token):
        return report  # rendered, or being rendered, by another task
    try:
        ctx = context.build(labels=report.labels, start=report.period_start, end=report.period_end, title=report.title)
        pdf = render_pdf(ctx)
    except Exception as exc:
        log.exception("report %s failed", report.pk)
        report.fail(f"{type(exc).__name__}: {exc}")
        raise
    try:
        report.store(pdf.data, pages=pdf.pages, hosts=len(ctx["hosts"]))
    except OSError as exc:
        # Storage, not rendering: the report fails with its cause and is tried again
        # (its period is not used up); the task retries with a back-off.
        report.fail(f"the PDF could not be stored in {settings.REPORTS_DIR}: {exc.strerror or exc}; it is tried again later")
        raise ReportNotStored(str(exc)) from exc
    recipients = report.schedule.recipient_list if report.schedule else []
    if recipients:
        message = EmailMessage(
            subject=f"[Posture] {report}",
            body=f"Posture report for {report.scope_label}, {report.period_start:%d %b %Y} to {report.period_end:%d %b %Y}: "
            f"{report.hosts} hosts, {report.pages} pages. The PDF is attached.",
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=recipients,
        )
        message.attach(report.filename, pdf.data, "application/pdf")
        message.send()
        report.emailed_to = recipients
        report.save(update_fields=["emailed_to"])
    log.info("report %s ready: %d pages, %d bytes", report.pk, report.pages, report.size)
    return report
