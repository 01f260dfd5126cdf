"""Signing in to a running Posture over HTTP, for tests that start ``serve`` itself."""

from __future__ import annotations

import re

import requests


def signed_in(session: requests.Session, base: str, password: str, username: str = "admin") -> bool:
    """Post the login form once; True when it lands on the fleet page. False while the
    server is not listening yet (for ``wait_for``)."""
    try:
        page = session.get(f"{base}/login/", timeout=10)
    except requests.RequestException:
        return False  # not listening, or still booting
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{base}/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/login/"},
        timeout=5,
    )
    return response.url.rstrip("/") == base
