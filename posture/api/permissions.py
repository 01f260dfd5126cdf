"""The pages' permissions, per API action: a view lists what each action needs."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class RolePermission(BasePermission):
    """Allow an action when the user holds the permission the view's ``required`` map
    names for it (the same ``posture.*`` permissions the pages check); deny anything unmapped."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        required = getattr(view, "required", {})
        action = getattr(view, "action", None) or request.method.lower()
        perm = required.get(action)
        return perm is not None and request.user.has_perm(perm)
