"""Absolute links that leave the site in e-mails, built on PUBLIC_BASE_URL and never on the request's host.

A client chooses the Host and X-Forwarded-Host it sends; a reset link built on them could point at the
client's own site and hand it the token. Production refuses to start without PUBLIC_BASE_URL (config.py).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, url_for


def mailed_url(endpoint: str, **values) -> str:
    """An absolute link to one of our pages, for an e-mail."""
    base = current_app.config["PUBLIC_BASE_URL"]
    if not base:
        if current_app.config["ENV_NAME"] == "production":
            raise RuntimeError("PUBLIC_BASE_URL is not set: mailed links are never built on the request's host")
        return url_for(endpoint, **values, _external=True)  # local use: development and tests
    parts = urlsplit(base)
    # Bound to the public address alone, so nothing of the request (host, scheme, script root) goes in.
    adapter = current_app.url_map.bind(parts.netloc, script_name=parts.path.rstrip("/") or "/",
                                       url_scheme=parts.scheme)
    return adapter.build(endpoint, values, force_external=True)
