"""Report schedules, generated reports, "generate now" and downloads."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from posture.forms import GenerateReportForm, ReportScheduleForm
from posture.models import AuditAction, AuditEntry, Report, ReportSchedule, ReportStatus
from posture.tasks import generate_report

from .rendering import HtmxHttpRequest, paginate, render_page


def _context(request: HtmxHttpRequest, **forms: object) -> dict[str, object]:
    page = paginate(request, Report.objects.select_related("schedule", "created_by"), per_page=20)
    return {
        "page": page,
        "busy": any(r.status in (ReportStatus.QUEUED, ReportStatus.RENDERING) for r in page),
        "schedules": ReportSchedule.objects.all(),
        "generate_form": forms.get("generate_form") or GenerateReportForm(),
        "schedule_form": forms.get("schedule_form") or ReportScheduleForm(),
        "can_generate": request.user.has_perm("posture.add_report"),
        "can_schedule": request.user.has_perm("posture.add_reportschedule"),
        "can_toggle": request.user.has_perm("posture.change_reportschedule"),
        "can_delete_schedule": request.user.has_perm("posture.delete_reportschedule"),
    }


@require_GET
@permission_required("posture.view_report", raise_exception=True)
def reports(request: HtmxHttpRequest) -> HttpResponse:
    return render_page(request, "posture/reports.html", _context(request), parts=("list",))


@require_POST
@permission_required("posture.add_report", raise_exception=True)
def generate_now(request: HtmxHttpRequest) -> HttpResponse:
    form = GenerateReportForm(request.POST)
    if not form.is_valid():
        return render_page(request, "posture/reports.html", _context(request, generate_form=form), status=400)
    report = Report.request_now(by=request.user, labels=form.cleaned_data["labels_text"], days=form.cleaned_data["days"])
    generate_report.delay_on_commit(report.pk)
    messages.info(request, "Report queued; it appears below when ready.")
    return redirect("reports")


@require_POST
@permission_required("posture.add_reportschedule", raise_exception=True)
def schedule_new(request: HtmxHttpRequest) -> HttpResponse:
    form = ReportScheduleForm(request.POST)
    if not form.is_valid():
        return render_page(request, "posture/reports.html", _context(request, schedule_form=form), status=400)
    with transaction.atomic():
        schedule = form.save()
        AuditEntry.log(request.user, AuditAction.SCHEDULE_ADD, schedule, frequency=schedule.frequency, recipients=schedule.recipient_list)
    messages.success(request, f"Schedule {schedule.name} saved; next report {schedule.next_run_at:%d %b %Y %H:%M} UTC.")
    return redirect("reports")


@require_GET
@permission_required("posture.view_report", raise_exception=True)
def download(request: HtmxHttpRequest, pk: int) -> FileResponse:
    report = get_object_or_404(Report, pk=pk)
    if report.status != ReportStatus.READY or not report.file:
        raise Http404("This report has no PDF (yet).")
    return FileResponse(report.file.open("rb"), as_attachment=True, filename=report.filename, content_type="application/pdf")


@require_POST
@permission_required("posture.change_reportschedule", raise_exception=True)
def schedule_toggle(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    schedule = get_object_or_404(ReportSchedule, pk=pk)
    schedule.enabled = not schedule.enabled
    with transaction.atomic():
        schedule.save(update_fields=["enabled"])
        AuditEntry.log(request.user, AuditAction.SCHEDULE_ENABLE if schedule.enabled else AuditAction.SCHEDULE_DISABLE, schedule)
    messages.success(request, f"Schedule {schedule.name} {'enabled' if schedule.enabled else 'paused'}.")
    return redirect("reports")


@require_POST
@permission_required("posture.delete_reportschedule", raise_exception=True)
def schedule_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    schedule = get_object_or_404(ReportSchedule, pk=pk)
    with transaction.atomic():
        AuditEntry.log(request.user, AuditAction.SCHEDULE_DELETE, schedule)
        schedule.delete()  # its reports stay, detached
    messages.success(request, f"Schedule {schedule.name} removed; its reports are kept.")
    return redirect("reports")
