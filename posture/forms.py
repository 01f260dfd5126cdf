"""Forms for hosts, exceptions, reports and alerts; credentials and channel URLs are write-only."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from posture.labels import parse_labels
from posture.models import AlertEvent, AlertRule, DockerHost, ReportSchedule, Severity
from posture.models.exceptions import expiry_problem, start_of
from posture.rules import BY_ID, RULES

MAX_CREDENTIAL_BYTES = 64 * 1024
CREDENTIAL_FIELDS = {"tls_ca": "CA certificate (PEM)", "tls_cert": "client certificate (PEM)", "tls_key": "client key (PEM)", "ssh_key": "SSH private key"}


class HostForm(forms.ModelForm):
    labels_text = forms.CharField(label="Labels", required=False, help_text="KEY=VALUE, comma-separated: env=prod, team=payments")
    tls_ca_file = forms.FileField(label=CREDENTIAL_FIELDS["tls_ca"], required=False)
    tls_cert_file = forms.FileField(label=CREDENTIAL_FIELDS["tls_cert"], required=False)
    tls_key_file = forms.FileField(label=CREDENTIAL_FIELDS["tls_key"], required=False)
    ssh_key_file = forms.FileField(label=CREDENTIAL_FIELDS["ssh_key"], required=False)
    clear_credentials = forms.BooleanField(required=False, help_text="Forget every stored certificate and key.")

    class Meta:
        model = DockerHost
        fields = ["name", "url", "insecure", "poll_interval", "enabled", "host_listeners"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["labels_text"].initial = ", ".join(f"{k}={v}" for k, v in self.instance.labels.items())

    def stored(self) -> list[str]:
        """Which credentials are on file, by name only: never shown back."""
        return [label for field, label in CREDENTIAL_FIELDS.items() if self.instance.pk and getattr(self.instance, field)]

    def clean_labels_text(self) -> dict[str, str]:
        return parse_labels(self.cleaned_data.get("labels_text", ""))

    def _clean_credential(self, field: str) -> str | None:
        upload = self.cleaned_data.get(f"{field}_file")
        if not upload:
            return None
        if upload.size > MAX_CREDENTIAL_BYTES:
            raise forms.ValidationError({f"{field}_file": "That file is too large to be a certificate or key."})
        try:
            text = upload.read().decode("ascii")
        except UnicodeDecodeError:
            raise forms.ValidationError({f"{field}_file": "Upload a PEM (text) file."}) from None
        if "-----BEGIN" not in text:
            raise forms.ValidationError({f"{field}_file": "This does not look like a PEM file (no -----BEGIN line)."})
        return text

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.cleaned_data.get("clear_credentials"):
            for field in CREDENTIAL_FIELDS:
                setattr(self.instance, field, "")
        for field in CREDENTIAL_FIELDS:
            value = self._clean_credential(field)
            if value is not None:
                setattr(self.instance, field, value)
        self.instance.labels = cleaned.get("labels_text") or {}
        return cleaned

    def host_to_test(self) -> DockerHost:
        """The host as the form would save it, for "Test connection" (not saved)."""
        host = self.instance
        for field in ("name", "url", "insecure"):
            setattr(host, field, self.cleaned_data.get(field, getattr(host, field)))
        return host


class AcceptRiskForm(forms.Form):
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), min_length=10, max_length=2000, help_text="Why this is acceptable, and who decided."
    )
    expires_on = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}), help_text="The acceptance lapses at the start of this day (UTC); at most a year."
    )

    def clean_expires_on(self) -> date:
        return _expiry(self.cleaned_data["expires_on"])


class LabelScopeForm(forms.Form):
    """A host label scope typed as text, cleaned into a dict."""

    labels_text = forms.CharField(label="Scope (labels)", required=False, help_text="KEY=VALUE, comma-separated; empty means every host.")

    def clean_labels_text(self) -> dict[str, str]:
        return parse_labels(self.cleaned_data.get("labels_text", ""))


class ReportScheduleForm(LabelScopeForm, forms.ModelForm):
    class Meta:
        model = ReportSchedule
        fields = ["name", "frequency", "weekday", "day_of_month", "at", "recipients", "enabled"]
        widgets = {"at": forms.TimeInput(attrs={"type": "time"}), "recipients": forms.TextInput()}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self.instance.labels = cleaned.get("labels_text") or {}
        return cleaned


class GenerateReportForm(LabelScopeForm):
    days = forms.IntegerField(label="Period (days, ending now)", min_value=1, max_value=366, initial=7)


def _expiry(day: date) -> date:
    problem = expiry_problem(start_of(day), timezone.now())
    if problem:
        raise forms.ValidationError(problem)
    return day


class ExceptionTermsForm(forms.Form):
    """What can change on an exception: why, who answers for it, until when."""

    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), min_length=10, max_length=2000, help_text="Why this is acceptable, and who decided (a ticket helps)."
    )
    owner = forms.ModelChoiceField(queryset=None, required=False, help_text="Who answers for it; you, if left empty.")
    expires_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), help_text="Lapses at the start of this day (UTC); at most a year ahead.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = get_user_model().objects.filter(is_active=True).order_by("username")

    def clean_expires_on(self) -> date:
        return _expiry(self.cleaned_data["expires_on"])


class ExceptionForm(ExceptionTermsForm):
    """A new exception: what (a rule, or a severity and below), where (any of host, labels,
    image glob, compose project, container name glob), and its terms. Field names are the
    explorer's query parameters, so a filtered URL pre-fills it."""

    rule = forms.ChoiceField(required=False, choices=[("", "—")] + [(r.id, f"{r.id} — {r.title}") for r in RULES])
    up_to = forms.ChoiceField(label="or every rule of", required=False, choices=[("", "—")] + [(s.value, f"{s.label} and below") for s in Severity])
    host = forms.CharField(required=False, max_length=100)
    label = forms.CharField(label="Host labels", required=False, help_text="KEY=VALUE, comma-separated; every one must match.")
    image = forms.CharField(label="Image", required=False, max_length=300, help_text="A glob: traefik:*, * and ? as wildcards.")
    project = forms.CharField(label="Compose project", required=False, max_length=200)
    name = forms.CharField(label="Container name", required=False, max_length=300, help_text="A glob: edge-*.")

    field_order = ["rule", "up_to", "host", "label", "image", "project", "name", "justification", "owner", "expires_on"]

    def clean_host(self) -> DockerHost | None:
        name = self.cleaned_data.get("host", "").strip()
        if not name:
            return None
        host = DockerHost.objects.filter(name=name).first()
        if host is None:
            raise forms.ValidationError(f"No host named {name}.")
        return host

    def clean_label(self) -> dict[str, str]:
        return parse_labels(self.cleaned_data.get("label", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if bool(cleaned.get("rule")) == bool(cleaned.get("up_to")):
            self.add_error("rule", "Name one rule, or a severity to cover every rule of that severity and below.")
        return cleaned

    def scope_fields(self) -> dict[str, Any]:
        """The model fields of the scope; use after ``is_valid()`` (or for a preview, on
        whatever cleaned)."""
        c = self.cleaned_data
        return {
            "rule_id": c.get("rule") or "",
            "max_severity": c.get("up_to") or "",
            "host": c.get("host"),
            "labels": c.get("label") or {},
            "image": (c.get("image") or "").strip(),
            "project": (c.get("project") or "").strip(),
            "name": (c.get("name") or "").strip(),
        }


class AlertRuleForm(LabelScopeForm, forms.ModelForm):
    """What a channel is sent; the host label scope is typed as text."""

    events = forms.MultipleChoiceField(choices=AlertEvent.choices, widget=forms.CheckboxSelectMultiple, initial=AlertRule().events)
    rules_text = forms.CharField(label="Rules", required=False, help_text="Rule ids, comma-separated; empty means every rule.")

    class Meta:
        model = AlertRule
        fields = ["channel", "events", "min_severity", "risk_points"]
        labels = {"min_severity": "Severity at least", "risk_points": "Risk rise (points)"}
        help_texts = {"risk_points": "For “risk”: alert when a poll raises a host's score by this much."}

    def clean_rules_text(self) -> list[str]:
        rule_ids = [r.strip() for r in self.cleaned_data.get("rules_text", "").split(",") if r.strip()]
        unknown = [r for r in rule_ids if r not in BY_ID]
        if unknown:
            raise forms.ValidationError(f"unknown rule id(s): {', '.join(unknown)} (see the Rules page)")
        return rule_ids

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self.instance.labels = cleaned.get("labels_text") or {}
        self.instance.rule_ids = cleaned.get("rules_text") or []
        return cleaned


class ChannelForm(AlertRuleForm):
    """A new channel and its first rule."""

    name = forms.CharField(max_length=100, help_text="Letters, digits, dots, dashes and underscores.")
    target = forms.CharField(
        label="Apprise URL or e-mail",
        max_length=2000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="json://host:port/path, slack://…, msteams://…, mmost://… or email:ops@example.com. Stored encrypted, never shown again.",
    )
    field_order = ["name", "target"]

    class Meta(AlertRuleForm.Meta):
        fields = ["events", "min_severity", "risk_points"]
