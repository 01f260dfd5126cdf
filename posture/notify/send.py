"""Sending: Apprise for chat and webhooks, Django's mail settings for e-mail. The one
module that talks to notification services, so a fault can be injected here alone."""

from __future__ import annotations

import logging

import apprise
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail

from posture.models import Channel, ChannelKind

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The service did not take the message; the text says why, for the channel's page."""


def _asset() -> apprise.AppriseAsset:
    # Only Apprise's own plugins: never load code from plugin folders on the server.
    return apprise.AppriseAsset(plugin_paths=[], storage_path=None)


def redact(url: str) -> str:
    """The URL as it may be shown again (passwords and tokens masked); a clear error if
    Apprise does not understand it."""
    plugin = apprise.Apprise.instantiate(url.strip(), asset=_asset(), suppress_exceptions=True)
    if plugin is None:
        raise ValidationError({"target": "Apprise does not understand this URL (see its wiki for the services and their URL forms)."})
    return plugin.url(privacy=True)


def send(channel: Channel, title: str, body: str) -> None:
    if channel.kind == ChannelKind.EMAIL:
        try:
            send_mail(title, body, settings.DEFAULT_FROM_EMAIL, channel.recipients)
        except OSError as exc:  # smtplib errors are OSErrors
            raise DeliveryError(f"mail server: {exc}") from None
        return
    client = apprise.Apprise(asset=_asset())
    if not client.add(channel.target):
        raise DeliveryError("Apprise does not understand this channel's URL")
    # Apprise reports why a send failed in its log, not in an exception: keep those lines.
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = client.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT)
    if not ok:
        lines = [ln.split(" - ", 2)[-1] for ln in captured.getvalue().splitlines() if ln.strip()]
        raise DeliveryError("; ".join(lines[-2:]) or "the service did not accept the message")
