"""Generate one report: gather, render, store, mail."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMessage

from posture.models import Report

from . import context
from .pdf import render_pdf

log = logging.getLogger(__name__)


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
    report.store(pdf.data, pages=pdf.pages, hosts=len(ctx["hosts"]))
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
