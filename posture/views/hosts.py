"""The per-host drill-down, Poll now, and the hosts admin."""

from __future__ import annotations

from itertools import groupby

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from posture import charts, polling
from posture.forms import HostForm
from posture.models import AuditAction, AuditEntry, ContainerRecord, DockerHost, Finding, FindingEvent, PollRun, PollStatus, PublishedPort
from posture.tasks import poll_host

from .rendering import HtmxHttpRequest, paginate, query_without, render_page


def get_host(name: str) -> DockerHost:
    return get_object_or_404(DockerHost.objects.select_related("snapshot", "watch"), name=name)


# A host page stays small (~200 KiB) however big the host: long lists come a page at a time.
FINDINGS_PER_PAGE = 50
CONTAINERS_PER_PAGE = 50
CHANGES_LISTED = 50


def host_context(request: HtmxHttpRequest, host: DockerHost) -> dict[str, object]:
    """Everything the host page shows, in a fixed number of queries whatever the host's size."""
    current = Finding.objects.for_host(host).current()
    findings = paginate(request, current.by_severity(), per_page=FINDINGS_PER_PAGE, param="findings")
    # Whole-host counts per severity for the headings, whichever page of findings is shown.
    per_severity = dict(current.order_by().values_list("severity").annotate(n=Count("id")))
    containers = paginate(
        request,
        ContainerRecord.objects.filter(host=host).prefetch_related(Prefetch("ports", queryset=PublishedPort.objects.order_by("container_port"))),
        per_page=CONTAINERS_PER_PAGE,
        param="containers",
    )
    polls = list(PollRun.objects.filter(host=host)[:15])
    last_ok = next((p for p in polls if p.status == PollStatus.OK), None)
    changes = (
        FindingEvent.objects.filter(poll=last_ok).select_related("finding").order_by("kind", "finding__rule_id") if last_ok else FindingEvent.objects.none()
    )
    listed_changes = list(changes[:CHANGES_LISTED])
    samples = list(host.risk_samples.order_by("-at").values_list("at", "score")[:200])[::-1]
    return {
        "host": host,
        "watch": getattr(host, "watch", None),  # None until a watcher has seen the host
        "grouped": [(sev, list(items), per_severity.get(sev, 0)) for sev, items in groupby(findings, key=lambda f: f.severity)],
        "findings_page": findings,
        "findings_query": query_without(request, "findings"),
        "open_count": host.open_total,
        "containers": containers,
        "containers_query": query_without(request, "containers"),
        "networks": host.networks.all(),
        "engine": (host.snapshot.data.get("engine") if host.snapshot else None),
        "connection": (host.snapshot.data.get("connection") if host.snapshot else None),
        "host_state": (host.snapshot.data.get("host") if host.snapshot else None),
        "polls": polls,
        "changes": listed_changes,
        "more_changes": changes.count() - len(listed_changes),
        "risk_chart": charts.risk_history(samples),
        "can_poll": request.user.has_perm("posture.poll_host"),
        "can_manage": request.user.has_perm("posture.manage_hosts"),
    }


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def host_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    # The findings and containers pagers ask for their own section only.
    return render_page(request, "posture/host.html", host_context(request, get_host(name)), parts=("findings", "containers"))


@require_POST
@permission_required("posture.poll_host", raise_exception=True)
def poll_now(request: HtmxHttpRequest, name: str) -> HttpResponse:
    host = get_host(name)
    latest = PollRun.objects.filter(host=host).values_list("pk", flat=True).first() or 0
    poll_host.apply_async_on_commit((host.pk,), queue=host.poll_queue)
    AuditEntry.log(request.user, AuditAction.HOST_POLL, host)
    if not request.htmx:
        messages.info(request, f"Poll of {host.name} queued.")
        return redirect("host", name=host.name)
    return render_page(request, "posture/host.html", {"host": host, "after": latest, "waiting": True}, partial="poll-status")


@require_GET
@permission_required("posture.view_dockerhost", raise_exception=True)
def poll_status(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """Polled by the progress indicator until a poll newer than ``after`` has finished."""
    host = get_host(name)
    after = int(request.GET["after"]) if request.GET.get("after", "").isdigit() else 0
    run = PollRun.objects.filter(host=host, pk__gt=after).exclude(status=PollStatus.RUNNING).first()
    if run is None:
        return render_page(request, "posture/host.html", {"host": host, "after": after, "waiting": True}, partial="poll-status")
    # Done: the status and every section of the page, refreshed in one answer.
    return render_page(request, "posture/host.html", host_context(request, host) | {"run": run}, partial="poll-done")


@require_http_methods(["GET", "POST"])
@permission_required("posture.manage_hosts", raise_exception=True)
def host_edit(request: HtmxHttpRequest, name: str | None = None) -> HttpResponse:
    host = get_host(name) if name else None
    form = HostForm(request.POST or None, request.FILES or None, instance=host)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.register(actor=request.user, changed=form.changed_data)
        messages.success(request, f"Saved {saved.name}.")
        return redirect("host", name=saved.name)
    return render_page(request, "posture/host_form.html", {"form": form, "host": host}, status=400 if form.errors else 200)


@require_POST
@permission_required("posture.manage_hosts", raise_exception=True)
def host_test(request: HtmxHttpRequest) -> HttpResponse:
    """Try the connection settings in the form without saving them; when editing, the
    stored credentials are used unless new files are uploaded."""
    existing = get_host(request.GET["host"]) if request.GET.get("host") else None
    form = HostForm(request.POST, request.FILES, instance=existing)
    result = polling.test_connection(form.host_to_test()) if form.is_valid() else None
    return render_page(request, "posture/host_form.html", {"form": form, "test": result}, partial="test-result")


@require_POST
@permission_required("posture.manage_hosts", raise_exception=True)
def host_delete(request: HtmxHttpRequest, name: str) -> HttpResponse:
    get_host(name).remove(actor=request.user)
    messages.success(request, f"Removed {name} and its history.")
    return redirect(reverse("fleet"))
