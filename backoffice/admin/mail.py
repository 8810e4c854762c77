"""Outgoing mail: what could not be delivered, what waits, what was sent; an undelivered message sent again.

Staff see who a message went to, what it was about and what the mail server said, never its body: a body
may carry a provider's single-use sign-in or reset link.
"""
from __future__ import annotations

from flask import abort, request, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm

from backoffice import unit_of_work
from backoffice.admin.base import SecuredView, flash_and_redirect
from backoffice.extensions import db
from backoffice.models import Role
from backoffice.services import outbox

LIST_TITLES = {"undelivered": "Could not be delivered", "waiting": "Waiting to be sent", "sent": "Sent"}


def visible_kinds() -> tuple[str, ...] | None:
    """The research team sees every message; an admin only those about staff accounts (no provider data)."""
    if current_user.has_role(Role.RESEARCHER, Role.RESEARCH_LEAD):
        return None
    return outbox.STAFF_ACCOUNT_KINDS


class MailView(SecuredView):
    allowed_roles = frozenset({Role.RESEARCHER, Role.RESEARCH_LEAD, Role.ADMIN})

    @expose("/")
    def index(self):
        which = request.args.get("list", "undelivered")
        if which not in outbox.MAIL_LISTS:
            abort(404)
        before = request.args.get("before", type=int)
        kinds = visible_kinds()
        page = outbox.mail_page(db.session, which, before if before and 0 < before < 2**63 else None, kinds=kinds)
        return self.render("admin/mail/index.html", page=page, which=which, titles=LIST_TITLES,
                           counts=outbox.open_counts(db.session, kinds), kinds=outbox.KIND_NAMES, form=FlaskForm(),
                           staff_only=kinds is not None)

    @expose("/<int:note_id>/retry", methods=["POST"])
    def retry(self, note_id: int):
        if not FlaskForm().validate_on_submit():
            abort(400)
        undelivered = url_for(".index", list="undelivered")
        return unit_of_work.perform(
            lambda: outbox.retry(db.session, current_user, note_id, kinds=visible_kinds()),
            done=lambda note: flash_and_redirect(
                f"Message #{note.id} to {note.recipient_email} will be sent again within a minute.", undelivered),
            refused=lambda refusal, status: flash_and_redirect(
                f"Message #{note_id} was not sent again: {refusal}", undelivered, "error"))
