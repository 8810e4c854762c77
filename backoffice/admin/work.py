"""Re-checks -> Work in flight: requested, running and failed work, and a retry for failed work."""
from __future__ import annotations

from flask import abort, current_app, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from backoffice import unit_of_work
from backoffice.admin.base import SecuredView, flash_and_redirect
from backoffice.extensions import db
from backoffice.models import (
    RESEARCH_ROLES,
    CheckKind,
    CriteriaCatalogue,
    ExclusionSource,
    Provider,
    Work,
    WorkState,
    utcnow,
)
from backoffice.services import rechecks, work


def age_words(seconds: float) -> str:
    """How long ago, as a person says it: 'under a minute', '4 minutes', '2 hours', '3 days'."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "under a minute"


def attempts_words(row: Work) -> str:
    if row.attempts == 0:
        return "not taken by a worker yet"
    times = "once" if row.attempts == 1 else f"{row.attempts} times"
    return f"taken {times} of {row.max_attempts} allowed"


LIMIT = 200


class WorkInFlightView(SecuredView):
    """Open for researchers and research leads, who can retry failed work."""

    allowed_roles = RESEARCH_ROLES

    @expose("/")
    def index(self):
        rows = work.in_flight(db.session, LIMIT)
        now = utcnow()
        providers = {p.id: p for p in db.session.scalars(select(Provider).where(Provider.id.in_(
            {int(r.target_id) for r in rows if r.target_type == "provider"})))}
        sources = {s.id: s for s in db.session.scalars(select(ExclusionSource).where(ExclusionSource.id.in_(
            {int(r.target_id) for r in rows if r.target_type == "exclusion_source"})))}
        versions = dict(db.session.execute(select(CriteriaCatalogue.id, CriteriaCatalogue.version).where(
            CriteriaCatalogue.id.in_({int(r.target_id) for r in rows if r.target_type == "criteria_catalogue"}))).all())
        shown = [{
            "row": r, "kind": work.KIND_WORDS[r.kind], "state": work.STATE_WORDS[r.state],
            "what": _what(r, providers, sources, versions), "provider": providers.get(int(r.target_id))
            if r.target_type == "provider" else None,
            "age": age_words((now - r.created_at).total_seconds()), "attempts": attempts_words(r),
        } for r in rows]
        totals: dict[WorkState, int] = {}
        for (_, state), n in work.counts_by_kind_and_state(db.session).items():
            totals[WorkState(state)] = totals.get(WorkState(state), 0) + n
        summary = ", ".join(f"{totals[s]:,} {work.STATE_WORDS[s]}" for s in WorkState if totals.get(s))
        return self.render("admin/work/index.html", rows=shown, form=FlaskForm(), summary=summary, limit=LIMIT)

    @expose("/<int:work_id>/retry", methods=["POST"])
    def retry(self, work_id: int):
        if not FlaskForm().validate_on_submit():
            abort(400)
        row = db.session.get(Work, work_id) or abort(404)
        return unit_of_work.perform(
            lambda: work.retry(db.session, current_user, row, work.Policy.from_config(current_app.config)),
            done=lambda _: self._retried(work_id, row),
            refused=lambda exc, status: flash_and_redirect(f"Work #{work_id} was not retried: {exc}",
                                                           url_for(".index"), "error"))

    @staticmethod
    def _retried(work_id: int, row: Work):
        if row.state == WorkState.REQUESTED:
            return flash_and_redirect(f"Work #{work_id} is recorded for another try, but the worker queue cannot be "
                                      "reached just now; it will start by itself when the queue is reachable again.",
                                      url_for(".index"), "warning")
        return flash_and_redirect(f"Work #{work_id} was sent again, with a fresh count of attempts.",
                                  url_for(".index"))


def _what(row: Work, providers: dict, sources: dict, versions: dict) -> str:
    if row.target_type == "provider":
        provider = providers.get(int(row.target_id))
        check = rechecks.CHECK_NAMES.get(CheckKind(row.params["check"]), row.params["check"])
        name = provider.public_name if provider else f"provider #{row.target_id} (no longer on file)"
        return f"{check} check of {name}"
    if row.target_type == "provider_batch":
        return f"exclusion screening of {len(row.params['provider_ids']):,} providers (ids {row.target_id})"
    if row.target_type == "exclusion_source":
        source = sources.get(int(row.target_id))
        return f"every listed provider against {source.file_name}" if source else "every listed provider"
    if row.target_type == "criteria_catalogue":
        version = versions.get(int(row.target_id))
        return f"the re-reviews criteria v{version} scheduled" if version else "the re-reviews a criteria version scheduled"
    if row.target_type == "decision":
        return f"the audit trail's head after decision #{row.target_id} granted a verification"
    return "every lapsed verification"


def build_views() -> list[SecuredView]:
    return [WorkInFlightView(name="Work in flight", endpoint="work_in_flight", url="/admin/work",
                             category="Re-checks")]
