"""Exceptions: the list with what each covers now, a form with a live preview, the detail
with its audit trail, editing the terms, and removal."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from posture.forms import ExceptionForm, ExceptionTermsForm
from posture.models import AuditEntry, DockerHost, ExceptionStatus, FindingStatus, RiskException
from posture.models.exceptions import start_of

from .rendering import HtmxHttpRequest, paginate, render_page

# Which exceptions the list shows: the active ones, the ended ones (expired or removed), or all.
SHOWN = {ExceptionStatus.ACTIVE: "active", "ended": "expired or removed", "all": "all"}


def get_exception(pk: int) -> RiskException:
    return get_object_or_404(RiskException.objects.with_coverage().select_related("host", "owner", "created_by", "finding"), pk=pk)


@require_GET
@permission_required("posture.view_riskexception", raise_exception=True)
def exception_list(request: HtmxHttpRequest) -> HttpResponse:
    shown = request.GET.get("show", "") if request.GET.get("show") in SHOWN else ExceptionStatus.ACTIVE
    exceptions = RiskException.objects.with_coverage().select_related("host", "owner")
    if shown == ExceptionStatus.ACTIVE:
        exceptions = exceptions.filter(status=ExceptionStatus.ACTIVE)
    elif shown == "ended":
        exceptions = exceptions.exclude(status=ExceptionStatus.ACTIVE)
    context = {
        "page": paginate(request, exceptions, per_page=50),
        "shown": shown,
        "choices": SHOWN,
        "can_add": request.user.has_perm("posture.add_riskexception"),
        "accepted": FindingStatus.ACCEPTED,
    }
    return render_page(request, "posture/exceptions.html", context, partial="list" if request.htmx else None)


def _preview(form: ExceptionForm) -> dict[str, object]:
    """What the scope in the form would cover now; works on a partly valid form."""
    fields = form.scope_fields()
    if not fields["rule_id"] and not fields["max_severity"]:
        return {"ready": False}
    if any(name in form.errors for name in ("rule", "up_to", "host", "label", "image", "project", "name")):
        return {"ready": False}
    draft = RiskException(**fields)
    findings, hosts = draft.preview()
    fleet = DockerHost.objects.count()
    return {
        "ready": True,
        "findings": findings,
        "hosts": hosts,
        "fleet": fleet,
        "nothing": findings == 0,
        "wide": fleet > 1 and hosts * 2 > fleet,
        "query": draft.scope().querystring(),
    }


@require_http_methods(["GET", "POST"])
@permission_required("posture.add_riskexception", raise_exception=True)
def exception_new(request: HtmxHttpRequest) -> HttpResponse:
    """GET pre-fills from the query (the explorer's "create exception from these" lands
    here) and previews; POST saves, or previews again when asked to."""
    if request.method == "POST":
        form = ExceptionForm(request.POST)
        if form.is_valid() and "preview" not in request.POST:
            terms = form.cleaned_data
            try:
                exception = RiskException.objects.add(
                    actor=request.user,
                    justification=terms["justification"],
                    owner=terms["owner"] or request.user,
                    expires_at=start_of(terms["expires_on"]),
                    **form.scope_fields(),
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                covered = exception.covered.filter(status=FindingStatus.ACCEPTED).count()
                messages.success(request, f"Exception #{exception.pk} saved: {covered} finding{'s' * (covered != 1)} accepted now.")
                return redirect("exception", pk=exception.pk)
        status = 200 if "preview" in request.POST and not form.errors else 400
    else:
        form = ExceptionForm(request.GET or None, initial={"owner": request.user.pk})
        status = 200
    if form.is_bound:
        form.is_valid()  # cleans what it can, for the preview
    preview = _preview(form) if form.is_bound else {"ready": False}
    # An unsaved GET form shows no errors yet: only the preview reacts to what is typed.
    context = {"form": form, "preview": preview, "show_errors": request.method == "POST"}
    return render_page(request, "posture/exception_form.html", context, parts=("preview",), status=status)


def _detail(request: HtmxHttpRequest, exception: RiskException, form: ExceptionTermsForm | None = None) -> dict[str, object]:
    initial = {"justification": exception.justification, "owner": exception.owner_id, "expires_on": exception.expires_at.date()}
    return {
        "exception": exception,
        "form": form or ExceptionTermsForm(initial=initial),
        "history": AuditEntry.objects.filter(target=str(exception)).select_related("actor")[:50],
        "covered_query": exception.scope().with_status(FindingStatus.ACCEPTED).querystring(),
        "exception_query": f"exception={exception.pk}&status={FindingStatus.ACCEPTED}",
        "can_change": request.user.has_perm("posture.change_riskexception") and exception.status == ExceptionStatus.ACTIVE,
        "can_remove": request.user.has_perm("posture.delete_riskexception") and exception.status == ExceptionStatus.ACTIVE,
    }


@require_GET
@permission_required("posture.view_riskexception", raise_exception=True)
def exception_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return render_page(request, "posture/exception.html", _detail(request, get_exception(pk)))


@require_POST
@permission_required("posture.change_riskexception", raise_exception=True)
def exception_edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    exception = get_exception(pk)
    form = ExceptionTermsForm(request.POST)
    if exception.status != ExceptionStatus.ACTIVE:
        form.add_error(None, "This exception has ended; create a new one.")
    if form.is_valid():
        terms = form.cleaned_data
        try:
            changed = exception.edit(
                actor=request.user, justification=terms["justification"], owner=terms["owner"] or exception.owner, expires_at=start_of(terms["expires_on"])
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Changed {', '.join(changed)}." if changed else "Nothing changed.")
            return redirect("exception", pk=pk)
    return render_page(request, "posture/exception.html", _detail(request, exception, form), status=400)


@require_POST
@permission_required("posture.delete_riskexception", raise_exception=True)
def exception_remove(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    exception = get_exception(pk)
    reopened = exception.remove(actor=request.user)
    messages.success(request, f"Exception #{pk} removed: {reopened} finding{'s' * (reopened != 1)} reopened.")
    return redirect("exception", pk=pk)
