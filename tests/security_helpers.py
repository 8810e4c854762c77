"""Builders for the sign-in, session and staff tests: browsers at their own addresses, page text, audit rows."""
from __future__ import annotations

import html
import itertools
import re

from sqlalchemy import select

from backoffice.models import AuditEvent
from backoffice.services import mfa
from tests.conftest import login

_addresses = itertools.count(1)
TOO_MANY = "Too many attempts"


def new_client(app):
    """A browser at an address of its own, so the per-address sign-in limit counts each browser apart."""
    client = app.test_client()
    n = next(_addresses)
    client.environ_base["REMOTE_ADDR"] = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    return client


def signed_in(app, account):
    """A new browser signed in as the account through the pages (password, then the code for staff)."""
    client = new_client(app)
    response = login(client, account)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def without_nonces(page: str) -> str:
    """A page with its Content-Security-Policy nonces masked: they differ in every response by design, so two
    answers that must look the same are compared without them."""
    return re.sub(r'nonce="[^"]*"', 'nonce="NONCE"', page)


def shown_recovery_codes(response) -> list[str]:
    return re.findall(r"<li><code>([a-z0-9-]+)</code></li>", response.get_data(as_text=True))


def wrong_code(secret: str) -> str:
    """A well-formed six-digit code that matches no time step near now."""
    near = {mfa.code_at_step(secret, mfa.current_step() + offset) for offset in range(-3, 4)}
    return next(code for code in ("000000", "123456", "654321", "111111", "999999") if code not in near)


def audit_events(session, action: str, entity_id=None) -> list[AuditEvent]:
    session.expire_all()
    query = select(AuditEvent).where(AuditEvent.action == action)
    if entity_id is not None:
        query = query.where(AuditEvent.entity_id == str(entity_id))
    return list(session.scalars(query.order_by(AuditEvent.seq)))
