"""Finding workflow pages: acknowledge, resolve, dismiss or confirm a finding with a reason; re-check now."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import case, select
from sqlalchemy.orm import selectinload
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired

from backoffice import formatting, unit_of_work
from backoffice.admin.base import SecuredView, flash_and_redirect, only
from backoffice.admin.forms import IdsField, ReasonForm, reason_field
from backoffice.admin.refusals import Refusal, refusal_of
from backoffice.extensions import db
from backoffice.models import (
    OPEN_FINDING_STATES,
    READER_ROLES,
    RESEARCH_ROLES,
    CheckKind,
    CheckRun,
    ExclusionRecord,
    Finding,
    FindingSeverity,
    Provider,
    WorkState,
)
from backoffice.services import findings, rechecks, sources, work
from backoffice.services.errors import DomainError
from backoffice.services.reasons import REASON_MIN_LENGTH

STALE_PAGE = "This page is out of date or was changed: reload it and try again."
REASON_NEEDED = f"Give a reason (at least {REASON_MIN_LENGTH} characters): it is kept in the audit trail."

SEVERITY_ORDER = case({FindingSeverity.CRITICAL.value: 0, FindingSeverity.WARNING.value: 1}, value=Finding.severity,
                      else_=2)


class BulkFindingsForm(FlaskForm):
    """The findings ticked in the worklist, what to do with them, and why."""

    ids = IdsField("Findings", what="finding numbers")
    action = RadioField("Do", choices=[SelectChoice("acknowledge", "Acknowledge"), SelectChoice("dismiss", "Dismiss")],
                        validators=[InputRequired("Choose acknowledge or dismiss.")])
    reason = reason_field()


class FindingWorkView(SecuredView):
    """Readable by research and audit; every POST is for researchers and research leads only."""

    allowed_roles = READER_ROLES
    ACTIONS = {
        "acknowledge": findings.acknowledge,
        "resolve": findings.resolve,
        "dismiss": findings.dismiss,
        "confirm": findings.confirm,
    }

    def _can_act(self) -> bool:
        return current_user.has_role(*RESEARCH_ROLES)

    @expose("/")
    def index(self, bulk: BulkFindingsForm | None = None, status: int = 200):
        # Ids first, sorted from the covering index; then only those rows (sorting whole rows took 30 ms at 10k open).
        ids = list(db.session.scalars(
            select(Finding.id).where(Finding.state.in_(OPEN_FINDING_STATES))
            .order_by(SEVERITY_ORDER, Finding.opened_at.desc()).limit(200)
        ))
        rows = {f.id: f for f in db.session.scalars(
            select(Finding).where(Finding.id.in_(ids)).options(selectinload(Finding.provider)))}
        open_findings = [rows[i] for i in ids]
        if self._can_act() and bulk is None:
            bulk = BulkFindingsForm(formdata=None)
        refusal = refusal_of(bulk, f"Nothing was {findings.BULK_ACTIONS.get(bulk.action.data, 'done')}",
                             "bulk-findings", lambda name: name if name == "ids" else f"bulk-{name}") if bulk else None
        return self.render("admin/findings/index.html", findings=open_findings, bulk=bulk if self._can_act() else None,
                           ticked=set(bulk.ids.data or []) if bulk else set(), refusal=refusal), status

    @expose("/bulk", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def bulk(self):
        """Acknowledge or dismiss the ticked findings with one reason: each audited, all of them or none."""
        form = BulkFindingsForm()

        def do(f):
            chosen = list(db.session.scalars(select(Finding).where(Finding.id.in_(f.ids.data))))
            missing = sorted(set(f.ids.data) - {finding.id for finding in chosen})
            if missing:
                raise DomainError(f"Finding #{missing[0]} does not exist. Nothing was changed.", field="ids")
            return findings.act_on_many(db.session, current_user, f.action.data, chosen, f.reason.data)

        def done(count: int):
            word = "finding" if count == 1 else "findings"
            return flash_and_redirect(f"{count} {word} {findings.BULK_ACTIONS[form.action.data]}.", url_for(".index"))

        return unit_of_work.submit(form, do, done=done, again=lambda f, status: self.index(f, status),
                                   default_field="ids")

    @expose("/<int:finding_id>")
    def finding(self, finding_id: int, form: ReasonForm | None = None, refusal: Refusal | None = None,
                status: int = 200):
        finding = db.session.get(Finding, finding_id) or abort(404)
        record = None
        if finding.check == CheckKind.EXCLUSION and finding.detail.get("exclusion_record_id"):
            record = db.session.get(ExclusionRecord, finding.detail["exclusion_record_id"])
        run = db.session.get(CheckRun, finding.last_check_run_id) if finding.last_check_run_id else None
        form = form or ReasonForm(formdata=None, row_version=finding.row_version)
        return self.render("admin/findings/finding.html", finding=finding, provider=finding.provider, record=record,
                           run=run, form=form, can_act=self._can_act(), refusal=refusal), status

    # What each action does, as its refusal banner says it was not done.
    NOT_DONE = {"acknowledge": "The finding was not acknowledged", "resolve": "The finding was not resolved",
                "dismiss": "The finding was not dismissed", "confirm": "The exclusion match was not confirmed"}

    @expose("/<int:finding_id>/<action>", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def act(self, finding_id: int, action: str):
        """Call the service with the reason as one unit of work; a refusal re-renders the page with a banner, the reason
        as typed and the page on the form (its buttons post to #finding-actions)."""
        service = self.ACTIONS.get(action) or abort(404)
        finding = db.session.get(Finding, finding_id) or abort(404)
        form = ReasonForm()
        reason = (form.reason.data or "").strip()
        valid = form.validate_on_submit()

        def refused(problem: str, status: int, beside_reason: bool = False):
            if beside_reason:
                form.reason.errors = [problem]
            refusal = Refusal(self.NOT_DONE[action], [problem], "reason" if beside_reason else "finding-actions",
                              "reason" if beside_reason else None)
            return self.finding(finding_id, form, refusal, status)

        if "row_version" in form.errors:
            return refused(STALE_PAGE, 409)
        if not valid and action != "acknowledge":
            return refused(REASON_NEEDED, 400, beside_reason=True)
        return unit_of_work.perform(
            lambda: service(db.session, current_user, finding, reason, expected_version=form.row_version.data),
            done=lambda _: flash_and_redirect(f"Finding #{finding_id}: {action} recorded.",
                                              url_for(".finding", finding_id=finding_id)),
            refused=lambda exc, status: refused(str(exc), status, beside_reason=exc.field == "reason"))

    @expose("/provider/<int:provider_id>")
    def provider(self, provider_id: int):
        provider = db.session.get(Provider, provider_id) or abort(404)
        open_findings = db.session.scalars(
            select(Finding).where(Finding.provider_id == provider_id, Finding.state.in_(OPEN_FINDING_STATES))
            .order_by(SEVERITY_ORDER, Finding.id)
        ).all()
        latest = rechecks.latest_runs(db.session, provider_id)
        return self.render("admin/findings/provider.html", provider=provider, findings=open_findings,
                           latest=latest, recheck=formatting.recheck_status(provider.last_rechecked_at, latest),
                           run_sources=sources.of_run, form=FlaskForm(), can_act=self._can_act())

    @expose("/provider/<int:provider_id>/recheck", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def recheck(self, provider_id: int):
        if not FlaskForm().validate_on_submit():
            abort(400)
        provider = db.session.get(Provider, provider_id) or abort(404)
        with unit_of_work.atomic():  # the work is sent once this commit has happened, marked sent if the queue took it
            rows = rechecks.request_now(db.session, current_user, provider, work.Policy.from_config(current_app.config))
        if any(row.state == WorkState.REQUESTED for row in rows):
            flash("The re-check is recorded, but the worker queue cannot be reached just now. It will start by "
                  "itself when the queue is reachable again; there is nothing more to do. It is listed under "
                  "Re-checks, Work in flight.", "warning")
        else:
            flash("Re-check queued: website, NPI and exclusion screening results will appear here shortly.", "info")
        return redirect(url_for(".provider", provider_id=provider_id))


def build_views() -> list[SecuredView]:
    return [FindingWorkView(name="Work findings", endpoint="finding_work", url="/admin/finding-work",
                            category="Re-checks")]
