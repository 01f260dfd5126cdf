"""Alerts: what happened (``transitions``), how it reads (``messages``), and sending it (``send``).

The flow: a poll commits its findings and events; the poll task enqueues ``notify_poll``;
that derives the poll's transitions, matches them against every channel's alert rules,
and claims one grouped ``Notification`` per channel (unique per channel and transition);
``send_notification`` sends each with retries and backoff on a queue of its own.
"""
