"""What the API reads and writes. Credentials are write-only, as on the host form."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers

from posture.labels import parse_label
from posture.models import DockerHost, Finding, FindingEvent, FindingStatus, HostStatus, Report, RiskException, RiskSample, Severity
from posture.models.exceptions import expiry_problem

CREDENTIALS = ("tls_ca", "tls_cert", "tls_key", "ssh_key")


def clean_labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise serializers.ValidationError("an object of label names to values")
    try:
        return dict(parse_label(f"{k}={v}") for k, v in value.items())
    except ValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None


class HostSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(source="display_status", choices=HostStatus.choices, read_only=True)
    credentials = serializers.SerializerMethodField(help_text="which credentials are stored (never their content)")
    labels = serializers.JSONField(required=False, help_text="label name → value")
    open_findings = serializers.SerializerMethodField()
    tls_ca = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False)
    tls_cert = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False)
    tls_key = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False)
    ssh_key = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False)

    class Meta:
        model = DockerHost
        fields = [
            "name",
            "url",
            "insecure",
            "poll_interval",
            "labels",
            "enabled",
            "status",
            "last_poll_at",
            "last_success_at",
            "last_error",
            "risk_score",
            "open_findings",
            "credentials",
            "created_at",
            *CREDENTIALS,
        ]
        read_only_fields = ["last_poll_at", "last_success_at", "last_error", "risk_score", "created_at"]

    def validate_labels(self, value: Any) -> dict[str, str]:
        return clean_labels(value)

    def get_credentials(self, host: DockerHost) -> list[str]:
        return [field for field in CREDENTIALS if getattr(host, field)]

    def get_open_findings(self, host: DockerHost) -> dict[str, int] | None:
        if not hasattr(host, "open_total"):
            return None
        return {"total": host.open_total} | {s.value: getattr(host, f"open_{s}") for s in Severity}

    def save_host(self, *, actor: Any) -> DockerHost:
        """Register or edit through ``DockerHost.register`` (the one path, audited)."""
        host = self.instance or DockerHost()
        for field, value in self.validated_data.items():
            setattr(host, field, value)
        try:
            host.register(actor=actor, changed=list(self.validated_data))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}) from None
        self.instance = host
        return host


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = FindingEvent
        fields = ["at", "kind", "poll", "actor", "detail"]


class FindingSerializer(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)
    # Derived from the host's last good poll: unchanged polls write nothing to findings.
    last_seen = serializers.DateTimeField(source="last_seen_at", read_only=True)

    class Meta:
        model = Finding
        fields = [
            "id",
            "host",
            "rule_id",
            "cis",
            "severity",
            "subject_type",
            "subject_key",
            "subject_name",
            "item_key",
            "title",
            "running",
            "exposed",
            "status",
            "first_seen",
            "last_seen",
            "resolved_at",
            "accepted_until",
        ]


class FindingDetailSerializer(FindingSerializer):
    events = EventSerializer(many=True, read_only=True)

    class Meta(FindingSerializer.Meta):
        fields = [*FindingSerializer.Meta.fields, "evidence", "remediation", "events"]


class ExceptionSerializer(serializers.ModelSerializer):
    """A scoped exception (or one finding's acceptance): what, where, why, who, until when,
    and how much it covers now."""

    host = serializers.SlugRelatedField(slug_field="name", queryset=DockerHost.objects.all(), required=False, allow_null=True)
    owner = serializers.SlugRelatedField(slug_field="username", queryset=get_user_model().objects.filter(is_active=True), required=False, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    covered_findings = serializers.IntegerField(read_only=True)
    covered_hosts = serializers.IntegerField(read_only=True)

    class Meta:
        model = RiskException
        fields = [
            "id",
            "rule_id",
            "max_severity",
            "host",
            "labels",
            "image",
            "project",
            "name",
            "finding",
            "justification",
            "owner",
            "expires_at",
            "status",
            "created_by",
            "created_at",
            "ended_at",
            "covered_findings",
            "covered_hosts",
        ]
        read_only_fields = ["finding", "status", "created_by", "created_at", "ended_at"]
        extra_kwargs = {"justification": {"min_length": 10, "max_length": 2000}}

    def validate_labels(self, value: Any) -> dict[str, str]:
        return clean_labels(value)

    def validate_expires_at(self, value: Any) -> Any:
        return _expiry(value)


class AcceptanceSerializer(serializers.Serializer):
    """Accept the risk of one finding: an exception whose scope is that finding."""

    finding = serializers.PrimaryKeyRelatedField(queryset=Finding.objects.select_related("host"))
    justification = serializers.CharField(min_length=10, max_length=2000)
    expires_at = serializers.DateTimeField()

    def validate_finding(self, finding: Finding) -> Finding:
        if finding.status == FindingStatus.RESOLVED:
            raise serializers.ValidationError("this finding is resolved; there is no risk left to accept")
        return finding

    def validate_expires_at(self, value: Any) -> Any:
        return _expiry(value)


def _expiry(value: Any) -> Any:
    problem = expiry_problem(value, timezone.now())
    if problem:
        raise serializers.ValidationError(problem)
    return value


class RiskSampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = RiskSample
        fields = ["at", "score", "open_count", "counts", "poll"]


class ReportSerializer(serializers.ModelSerializer):
    schedule = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    download = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = [
            "id",
            "title",
            "schedule",
            "labels",
            "period_start",
            "period_end",
            "status",
            "error",
            "size",
            "pages",
            "hosts",
            "created_at",
            "created_by",
            "finished_at",
            "download",
        ]

    def get_download(self, report: Report) -> str | None:
        return reverse("api-report-download", kwargs={"pk": report.pk}) if report.is_ready else None


class GenerateReportSerializer(serializers.Serializer):
    labels = serializers.JSONField(required=False, default=dict, help_text="label name → value; empty for every host")
    days = serializers.IntegerField(min_value=1, max_value=366, default=7)

    def validate_labels(self, value: Any) -> dict[str, str]:
        return clean_labels(value)
