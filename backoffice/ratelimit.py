"""Rate limits per client address on sign-in, registration and password reset: the one place they are set up.

The lock-outs per e-mail address and per account (LOGIN_ACCOUNT_RATE_LIMIT, SECOND_FACTOR_RATE_LIMIT) are
not here: they must hold across every web process without Redis, so services.lockout counts them in the
database.

Each app gets its own Limiter, because Flask-Limiter keeps its storage on the Limiter object and a
module-level one would be shared by every app a process builds. Limits are attached to endpoints here
rather than with decorators in the views, so the views stay plain and the whole policy reads in one table.

When Redis is down the limits are counted in this process's memory instead (Flask-Limiter's in-memory fallback),
with one warning in the log, and Redis is tried again now and then: nobody is kept from signing in or reading
the feed because the counter is unreachable. Counted apart per process, the limits are looser for that time;
the lock-outs in the database are not.
"""
from __future__ import annotations

import uuid

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address


def _submitted_email() -> str:
    """The e-mail address in the posted form, so one account is protected however many addresses attack it."""
    return "email:" + (request.form.get("email") or "").strip().lower()[:254]


# endpoint -> [(setting holding the limit, key function, which responses count: None for all)]
LIMITS = {
    "auth.login": [("LOGIN_RATE_LIMIT", get_remote_address, None)],
    "auth.second_factor": [("LOGIN_RATE_LIMIT", get_remote_address, None)],
    "auth.enrol": [("LOGIN_RATE_LIMIT", get_remote_address, None)],
    "account.reset_request": [
        ("RESET_RATE_LIMIT", get_remote_address, None),
        ("RESET_ACCOUNT_RATE_LIMIT", _submitted_email, None),
    ],
    "account.reset": [("RESET_RATE_LIMIT", get_remote_address, None)],
    "account.resend_confirmation": [
        ("RESET_RATE_LIMIT", get_remote_address, None),
        ("RESET_ACCOUNT_RATE_LIMIT", _submitted_email, None),
    ],
    "account.register": [("REGISTER_RATE_LIMIT", get_remote_address, None)],
}


# The public feed is read with GET; limited per client address so one consumer cannot starve the rest.
READ_LIMITS = {
    "api.listings_feed": "API_RATE_LIMIT",
    "api.verification_receipt": "API_RATE_LIMIT",
    "api.openapi": "API_RATE_LIMIT",
    # The status list reads every decision still valid (benchmarks/NOTES.md): proxies cache it, clients are limited.
    "api.receipt_status": "API_RATE_LIMIT",
    "well_known.jwks": "API_RATE_LIMIT",
}


EXTENSION = "backoffice.limiter"


def storage_uri(config) -> str:
    """Redis when the deployment has it, so every web process counts together; memory otherwise."""
    return config.get("RATELIMIT_STORAGE_URI") or config.get("REDIS_URL") or "memory://"


def init_app(app: Flask) -> Limiter:
    """Build this app's limiter and attach the limits to their endpoints (call after blueprints)."""
    prefix = app.config["RATELIMIT_KEY_PREFIX"]
    if app.testing:
        # Tests share one Redis: each app counts on its own so one test's sign-ins never throttle the next.
        prefix = f"{prefix}-{uuid.uuid4().hex}"
    app.config["RATELIMIT_STORAGE_URI"] = uri = storage_uri(app.config)
    # A Redis that hangs counts as down after this long, like one that refuses the connection.
    timeout = app.config["REDIS_WEB_TIMEOUT_SECONDS"]
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout} \
        if uri.startswith(("redis://", "rediss://")) else {}
    limiter = Limiter(get_remote_address, app=app, key_prefix=prefix, default_limits=[], headers_enabled=True,
                      in_memory_fallback_enabled=True, storage_options=options)
    # The wrapped views reach the limiter through a weak reference, and Flask-Limiter keeps its own strong
    # one in app.extensions only when limits are enabled: the app holds it here, enabled or not.
    app.extensions[EXTENSION] = limiter
    for endpoint, limits in LIMITS.items():
        view = app.view_functions[endpoint]
        for setting, key_func, counts in limits:
            view = limiter.limit(
                lambda setting=setting: current_app.config[setting], key_func=key_func, methods=["POST"],
                scope=setting.lower(), deduct_when=counts,
            )(view)
        app.view_functions[endpoint] = view
    # Every HSDS endpoint is read like the feed, under the same limit.
    hsds = {endpoint: "API_RATE_LIMIT" for endpoint in app.view_functions if endpoint.startswith("hsds.")}
    for endpoint, setting in {**READ_LIMITS, **hsds}.items():
        app.view_functions[endpoint] = limiter.limit(
            lambda setting=setting: current_app.config[setting], methods=["GET"], scope=setting.lower(),
        )(app.view_functions[endpoint])
    return limiter
