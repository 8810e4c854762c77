"""Role checks: deny by default."""
from __future__ import annotations

from functools import wraps
from typing import Callable, Iterable

from flask import abort, redirect, request, url_for
from flask_login import current_user

from backoffice.models import Role


def has_any_role(roles: Iterable[Role]) -> bool:
    return current_user.is_authenticated and current_user.has_role(*roles)


def deny():
    """The response for a request that may not proceed: sign in first, or 403."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    abort(403)


def roles_required(*roles: Role) -> Callable:
    """Admit only signed-in accounts holding one of the roles; a view without this is not routed."""
    if not roles:
        raise ValueError("roles_required needs at least one role: routes are closed by default")

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not has_any_role(roles):
                return deny()
            return view(*args, **kwargs)

        wrapped.allowed_roles = frozenset(roles)
        return wrapped

    return decorator


def public(view: Callable) -> Callable:
    """Mark a view as open to anyone (sign-in pages, the public feed)."""
    view.allowed_roles = "public"
    return view
