"""API views: each loads what it shows up front (constant queries) and writes through
the same model methods as the pages, so every write is validated and audited once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.request import Request
from rest_framework.response import Response

from posture.models import AuditAction, AuditEntry, DockerHost, Finding, HostStatus, Report, ReportStatus, RiskException
from posture.tasks import generate_report, poll_host

from . import serializers as s
from .filters import FINDING_FILTERS, filter_findings, label_param

VIEW_HOSTS, MANAGE_HOSTS, POLL = "posture.view_dockerhost", "posture.manage_hosts", "posture.poll_host"
VIEW_FINDINGS, ACCEPT = "posture.view_finding", "posture.accept_risk"
VIEW_EXCEPTIONS, ADD_EXCEPTION, REMOVE_EXCEPTION = "posture.view_riskexception", "posture.add_riskexception", "posture.delete_riskexception"
VIEW_REPORTS, ADD_REPORT = "posture.view_report", "posture.add_report"


QUEUED = inline_serializer("Queued", {"queued": serializers.BooleanField(), "host": serializers.CharField()})


@extend_schema(tags=["hosts"])
class HostViewSet(viewsets.ModelViewSet):
    serializer_class = s.HostSerializer
    lookup_field = "name"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
    http_method_names = ["get", "post", "patch", "delete"]
    required = {
        "list": VIEW_HOSTS,
        "retrieve": VIEW_HOSTS,
        "risk": VIEW_HOSTS,
        "create": MANAGE_HOSTS,
        "partial_update": MANAGE_HOSTS,
        "destroy": MANAGE_HOSTS,
        "poll": POLL,
    }

    def get_queryset(self) -> Any:
        return DockerHost.objects.order_by("name")

    @extend_schema(
        parameters=[
            OpenApiParameter("status", enum=HostStatus.values, description="as the pages show it (stale included)"),
            OpenApiParameter("label", description="KEY=VALUE"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: Any) -> Any:
        if self.action != "list":
            return queryset
        params = self.request.query_params
        if params.get("status") in HostStatus.values:
            queryset = queryset.with_display_status(HostStatus(params["status"]))
        if params.get("label"):
            queryset = queryset.with_labels(label_param(params["label"]))
        return queryset

    def perform_create(self, serializer: s.HostSerializer) -> None:
        serializer.save_host(actor=self.request.user)

    def perform_update(self, serializer: s.HostSerializer) -> None:
        serializer.save_host(actor=self.request.user)

    def perform_destroy(self, instance: DockerHost) -> None:
        instance.remove(actor=self.request.user)

    @extend_schema(request=None, responses={202: QUEUED})
    @action(detail=True, methods=["post"])
    def poll(self, request: Request, name: str) -> Response:
        """Queue a poll of this host now (as "Poll now" on its page)."""
        host = self.get_object()
        with transaction.atomic():
            AuditEntry.log(request.user, AuditAction.HOST_POLL, host, via="api")
            poll_host.apply_async_on_commit((host.pk,), queue=host.poll_queue)
        return Response({"queued": True, "host": host.name}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=s.RiskSampleSerializer(many=True))
    @action(detail=True, methods=["get"])
    def risk(self, request: Request, name: str) -> Response:
        """The host's risk score over time, newest first."""
        host = self.get_object()
        page = self.paginate_queryset(host.risk_samples.order_by("-at", "-pk"))
        return self.get_paginated_response(s.RiskSampleSerializer(page, many=True).data)


@extend_schema(tags=["findings"])
class FindingViewSet(viewsets.ReadOnlyModelViewSet):
    required = {"list": VIEW_FINDINGS, "retrieve": VIEW_FINDINGS}

    def get_queryset(self) -> Any:
        findings = Finding.objects.select_related("host")
        if self.action == "retrieve":
            return findings.prefetch_related("events__actor")
        return filter_findings(findings, self.request.query_params).by_severity()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return s.FindingDetailSerializer if self.action == "retrieve" else s.FindingSerializer

    @extend_schema(parameters=[OpenApiParameter(name, description=text) for name, text in FINDING_FILTERS.items()])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)


@extend_schema(tags=["exceptions"])
class ExceptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Scoped exceptions: a rule (or every rule of a severity and below) on any of host,
    host labels, image glob, compose project and container name glob. Creating one accepts
    what it covers now and later; removing one reopens it."""

    serializer_class = s.ExceptionSerializer
    required = {"list": VIEW_EXCEPTIONS, "retrieve": VIEW_EXCEPTIONS, "create": ADD_EXCEPTION, "destroy": REMOVE_EXCEPTION}

    def get_queryset(self) -> Any:
        return RiskException.objects.with_coverage().select_related("host", "owner", "created_by")

    def perform_create(self, serializer: s.ExceptionSerializer) -> None:
        data = dict(serializer.validated_data)
        data.setdefault("owner", self.request.user)
        try:
            created = RiskException.objects.add(actor=self.request.user, **data)
        except ValidationError as exc:
            raise BadRequest(exc.message_dict if hasattr(exc, "error_dict") else {"scope": exc.messages}) from None
        serializer.instance = self.get_queryset().get(pk=created.pk)  # with what it covers now

    def perform_destroy(self, instance: RiskException) -> None:
        instance.remove(actor=self.request.user)


@extend_schema(tags=["exceptions"])
class AcceptanceViewSet(mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Accept the risk of one finding (as a finding's page does): an exception scoped to it."""

    serializer_class = s.AcceptanceSerializer
    required = {"create": ACCEPT}

    @extend_schema(responses={201: s.ExceptionSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        exception = data["finding"].accept(by=request.user, until=data["expires_at"], justification=data["justification"])
        covered = ExceptionViewSet().get_queryset().get(pk=exception.pk)
        return Response(s.ExceptionSerializer(covered).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["reports"])
class ReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ReportSerializer
    required = {"list": VIEW_REPORTS, "retrieve": VIEW_REPORTS, "download": VIEW_REPORTS, "create": ADD_REPORT}

    def get_queryset(self) -> Any:
        return Report.objects.select_related("schedule", "created_by").order_by("-created_at", "-pk")

    @extend_schema(request=s.GenerateReportSerializer, responses={202: s.ReportSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Generate a report now; it is rendered by a worker (poll its status, then download)."""
        form = s.GenerateReportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        report = Report.request_now(by=request.user, labels=form.validated_data["labels"], days=form.validated_data["days"])
        generate_report.delay_on_commit(report.pk)
        return Response(s.ReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> FileResponse:
        """The report's PDF, once it is ready."""
        report = self.get_object()
        if report.status != ReportStatus.READY or not report.file:
            raise Http404("This report has no PDF (yet).")
        return FileResponse(report.file.open("rb"), as_attachment=True, filename=report.filename, content_type="application/pdf")
