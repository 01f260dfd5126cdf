"""Notification channels and their alert rules, for Admins; "Send test" sends now."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from posture.forms import AlertRuleForm, ChannelForm
from posture.models import AlertRule, AuditAction, AuditEntry, Channel, NotificationStatus
from posture.notify import service

from .rendering import HtmxHttpRequest, render_page

MANAGE = "posture.manage_channels"


def _context(channel_form: ChannelForm | None = None, rule_form: AlertRuleForm | None = None) -> dict[str, object]:
    channels = Channel.objects.with_rules().annotate(
        pending=Count("notifications", filter=Q(notifications__status__in=[NotificationStatus.PENDING, NotificationStatus.SENDING])),
        failed=Count("notifications", filter=Q(notifications__status=NotificationStatus.FAILED)),
        sent=Count("notifications", filter=Q(notifications__status=NotificationStatus.SENT)),
    )
    return {"channels": channels, "channel_form": channel_form or ChannelForm(), "rule_form": rule_form or AlertRuleForm()}


def _get(pk: int) -> Channel:
    return get_object_or_404(Channel, pk=pk)


@require_GET
@permission_required(MANAGE, raise_exception=True)
def channels(request: HtmxHttpRequest) -> HttpResponse:
    return render_page(request, "posture/channels.html", _context())


@require_POST
@permission_required(MANAGE, raise_exception=True)
def channel_new(request: HtmxHttpRequest) -> HttpResponse:
    form = ChannelForm(request.POST)
    if form.is_valid():
        try:
            channel = service.new_channel(form.cleaned_data["name"], form.cleaned_data["target"])
            channel.add(actor=request.user, rule=form.instance)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Added channel {channel.name}. Send a test to check it.")
            return redirect("channels")
    return render_page(request, "posture/channels.html", _context(channel_form=form), status=400)


@require_POST
@permission_required(MANAGE, raise_exception=True)
def channel_test(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    channel = _get(pk)
    ok, outcome = service.test_channel(channel, actor=request.user)
    (messages.success if ok else messages.error)(request, f"{channel.name}: {outcome}")
    return redirect("channels")


@require_POST
@permission_required(MANAGE, raise_exception=True)
def channel_toggle(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    channel = _get(pk)
    with transaction.atomic():
        channel.enabled = not channel.enabled
        channel.save(update_fields=["enabled"])
        AuditEntry.log(request.user, AuditAction.CHANNEL_EDIT, channel, enabled=channel.enabled)
    messages.success(request, f"{channel.name} {'enabled' if channel.enabled else 'paused'}.")
    return redirect("channels")


@require_POST
@permission_required(MANAGE, raise_exception=True)
def channel_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    channel = _get(pk)
    channel.remove(actor=request.user)
    messages.success(request, f"Removed channel {channel.name}.")
    return redirect("channels")


@require_POST
@permission_required(MANAGE, raise_exception=True)
def rule_new(request: HtmxHttpRequest) -> HttpResponse:
    form = AlertRuleForm(request.POST)
    if not form.is_valid():
        return render_page(request, "posture/channels.html", _context(rule_form=form), status=400)
    with transaction.atomic():
        rule = form.save()
        AuditEntry.log(request.user, AuditAction.ALERT_RULE_ADD, rule.channel, rule=rule.describe())
    messages.success(request, f"Added a rule to {rule.channel.name}.")
    return redirect("channels")


@require_POST
@permission_required(MANAGE, raise_exception=True)
def rule_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule.objects.select_related("channel"), pk=pk)
    with transaction.atomic():
        AuditEntry.log(request.user, AuditAction.ALERT_RULE_REMOVE, rule.channel, rule=rule.describe())
        rule.delete()
    messages.success(request, f"Removed a rule of {rule.channel.name}.")
    return redirect("channels")
