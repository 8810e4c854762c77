"""Notifications, under the account menu: what each researcher or lead is told, and how."""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm

from backoffice import unit_of_work
from backoffice.admin.base import SecuredView
from backoffice.extensions import db
from backoffice.models import NoticeMode, Role
from backoffice.services import staff_notices


class NoticesView(SecuredView):
    allowed_roles = frozenset({Role.RESEARCHER, Role.RESEARCH_LEAD})

    def is_visible(self) -> bool:
        return False  # reached from the account menu, not the navigation

    @expose("/", methods=["GET", "POST"])
    def index(self):
        form = FlaskForm()
        problems = []
        if request.method == "POST":
            if not form.validate_on_submit():
                abort(400)
            chosen = {}
            for kind, notice in staff_notices.KINDS.items():
                value = request.form.get(kind, "")
                try:
                    chosen[kind] = NoticeMode(value)
                except ValueError:
                    problems.append(f"Choose how you are told when {notice.title[0].lower()}{notice.title[1:]}.")
            if not problems:
                with unit_of_work.atomic():
                    changed = staff_notices.set_preferences(db.session, current_user, chosen)
                flash("Your notification choices are saved." if changed else "Nothing changed.", "success")
                return redirect(url_for(".index"))
        return self.render("admin/notices.html", form=form, kinds=staff_notices.KINDS, modes=list(NoticeMode),
                           chosen=staff_notices.preferences(db.session, current_user), problems=problems,
                           is_lead=current_user.has_role(Role.RESEARCH_LEAD)), 400 if problems else 200
