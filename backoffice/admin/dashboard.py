"""The staff dashboard: where the work stands, at a glance."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm

from backoffice import unit_of_work
from backoffice.admin.audit import chain_status
from backoffice.admin.base import SecuredIndexView, only
from backoffice.admin.list_links import list_url
from backoffice.extensions import db
from backoffice.models import OPEN_FINDING_STATES, READER_ROLES, STAFF_ROLES, Role, utcnow
from backoffice.services import accounts, dashboard, outbox, sources, work


class DashboardView(SecuredIndexView):
    allowed_roles = STAFF_ROLES

    @expose("/")
    def index(self):
        research_view = current_user.has_role(*READER_ROLES)
        return self.render(
            "admin/dashboard.html",
            figures=dashboard.figures(db.session, utcnow()) if research_view else None,
            stale_sources=(sources.stale(db.session, sources.Freshness.from_config(current_app.config), utcnow())
                           if research_view else None),
            staff=accounts.staff_counts(db.session) if current_user.has_role(Role.ADMIN) else None,
            can_run_sweeps=current_user.has_role(Role.RESEARCH_LEAD),
            chain=chain_status() if current_user.has_role(Role.AUDITOR) else None,
            sweep_form=FlaskForm(), list_url=list_url, open_findings=sorted(OPEN_FINDING_STATES),
            mail=(outbox.open_counts(db.session) if current_user.has_role(Role.RESEARCHER, Role.RESEARCH_LEAD)
                  else outbox.open_counts(db.session, outbox.STAFF_ACCOUNT_KINDS)
                  if current_user.has_role(Role.ADMIN) else None),
        )

    @expose("/sweeps/verification-expiry", methods=["POST"])
    @only(Role.RESEARCH_LEAD)
    def run_verification_expiry_sweep(self):
        if not FlaskForm().validate_on_submit():
            abort(400)
        with unit_of_work.atomic():
            work.request_expiry_sweep(db.session, current_user, work.Policy.from_config(current_app.config))
        flash("The verification-expiry sweep is queued; lapsed verifications will show as expired shortly.", "info")
        return redirect(url_for("admin.index"))
