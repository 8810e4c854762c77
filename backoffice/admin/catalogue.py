"""The criteria catalogue's pages: every published version in words, and the editor in which a research lead
drafts the next version criterion by criterion, sees its difference from the version in force, and publishes it.

The draft lives in the page, not on the server: every button posts the whole next version, and the page comes
back with it as typed (a criterion added, removed or moved; the difference shown). Nothing is kept until Publish.
"""
from __future__ import annotations

import json
from datetime import timedelta

from flask import Response, abort, current_app, request, url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select

from backoffice import unit_of_work, zones
from backoffice.admin.base import SecuredView, flash_and_redirect, only
from backoffice.admin.catalogue_forms import CatalogueDraftForm
from backoffice.admin.refusals import Refusal
from backoffice.extensions import db
from backoffice.models import (
    READER_ROLES,
    CatalogueImpact,
    CatalogueImpactProvider,
    CriteriaCatalogue,
    Role,
    utcnow,
)
from backoffice.services import criteria, impact, work
from backoffice.services.errors import DomainError

EDITOR_ID = "catalogue-editor"
BLANK_CRITERION = {"code": "", "title": "", "guidance": "", "evidence": "", "required": True,
                   "required_for_advertisers": False, "advertisers_only": False, "applies_to_levels": [],
                   "automated_check": "", "freshness_days": ""}


# An impact report lists at most this many providers on its page; the counts above it cover them all.
SHOWN_ROWS = 500


def _providers(count: int) -> str:
    return f"{count} listed provider{'s' if count != 1 else ''}"


def _rereviews(count: int) -> str:
    return f"{count} re-review{'s' if count != 1 else ''}"


def _versions() -> list[CriteriaCatalogue]:
    return list(db.session.scalars(select(CriteriaCatalogue).order_by(CriteriaCatalogue.version.desc())))


def _draft_form(values: list[dict], notes: str | None, based_on: object) -> CatalogueDraftForm:
    return CatalogueDraftForm(formdata=None, notes=notes or "", based_on="" if based_on is None else str(based_on),
                              criteria=values)


def _editor_refusal(form: CatalogueDraftForm, what: str) -> Refusal | None:
    """The banner for a draft that came back with problems: each one named by its criterion and field; the
    first field in error is focused."""
    problems: list[str] = list(form.form_errors)
    focus = None
    for field in (form.notes, form.based_on, form.schedule_rereviews, form.rereview_deadline):
        problems += [f"{field.label.text}: {error}" for error in field.errors]
        if field.errors and field is form.notes:
            focus = focus or field.id
    for number, entry in enumerate(form.criteria.entries, start=1):
        name = entry.form.code.data or f"Criterion {number}"
        for field in entry.form:
            if field.errors:
                problems += [f"{name}, {field.label.text}: {error}" for error in field.errors]
                focus = focus or field.id
    problems += [error for error in form.criteria.errors if isinstance(error, str)]
    csrf = getattr(form, "csrf_token", None)
    if csrf is not None and csrf.errors:
        problems.append("The form expired; reload the page and try again.")
    if not problems:
        return None
    return Refusal(what=what, problems=problems, target=focus or EDITOR_ID, focus=focus)


def _edited(form: CatalogueDraftForm, latest: CriteriaCatalogue | None) -> set[str]:
    """The codes of the criteria whose typed fields differ from the version in force (before any preview, and
    when the draft cannot be compared as a whole because a field is wrong): they stay open on the page."""
    if latest is None:
        return set()
    published = {item["code"]: _draft_form([item], None, None).values()[0]
                 for item in criteria.definition_of(latest)["criteria"]}
    return {entry.form.code.data for entry in form.criteria.entries
            if entry.form.code.data in published and _typed(entry.form.data) != _typed(published[entry.form.code.data])}


def _typed(values: dict) -> dict:
    """A criterion's fields as text, the way a form sends them back."""
    return {name: sorted(value) if isinstance(value, list) else bool(value) if isinstance(value, bool)
            else str(value if value is not None else "").strip() for name, value in values.items()}


class CatalogueView(SecuredView):
    """Criteria catalogue versions; a research lead drafts and publishes the next one."""

    allowed_roles = READER_ROLES

    @expose("/", methods=["GET"])
    def index(self):
        catalogues = _versions()
        return self.render("admin/catalogue/index.html", catalogues=catalogues,
                           current=catalogues[0] if catalogues else None,
                           can_publish=current_user.has_role(Role.RESEARCH_LEAD))

    @expose("/v/<int:version>", methods=["GET"])
    def version(self, version: int):
        catalogue = self._catalogue(version)
        before = criteria.previous(db.session, catalogue)
        latest = criteria.current(db.session)
        changes = criteria.difference(before.criteria if before else [], catalogue.criteria)
        kept = db.session.get(CatalogueImpact, catalogue.id)
        rows = list(db.session.scalars(
            select(CatalogueImpactProvider).where(CatalogueImpactProvider.catalogue_id == catalogue.id)
            .order_by(CatalogueImpactProvider.provider_name, CatalogueImpactProvider.provider_id)
            .limit(SHOWN_ROWS))) if kept else []
        return self.render("admin/catalogue/version.html", catalogue=catalogue, before=before,
                           changes=changes, in_force=latest is not None and latest.id == catalogue.id,
                           words=criteria, kept=kept, kept_rows=rows, shown_rows=SHOWN_ROWS,
                           opening=impact.opening(db.session, catalogue.id) if kept and kept.respond_by else None,
                           titles={c.code: c.title for c in catalogue.criteria})

    @expose("/v/<int:version>/definition.json", methods=["GET"])
    def definition(self, version: int):
        """The version as the JSON file `flask criteria publish` reads, for auditors and for the record."""
        body = json.dumps(criteria.definition_of(self._catalogue(version)), indent=2, ensure_ascii=False)
        return Response(body + "\n", mimetype="application/json", headers={
            "Content-Disposition": f'attachment; filename="criteria-catalogue-v{version}.json"'})

    @expose("/next", methods=["GET"])
    @only(Role.RESEARCH_LEAD)
    def edit(self):
        latest = criteria.current(db.session)
        values = criteria.definition_of(latest)["criteria"] if latest else [dict(BLANK_CRITERION)]
        form = _draft_form(values, "", latest.version if latest else None)
        return self._editor(form, latest)

    @expose("/next", methods=["POST"])
    @only(Role.RESEARCH_LEAD)
    def draft(self):
        """Change the draft's shape (add, remove, move a criterion) or preview its difference; nothing is kept."""
        form = CatalogueDraftForm()
        latest = criteria.current(db.session)
        verb, _, number = request.form.get("action", "preview").partition(":")
        if verb == "impact":
            if not form.validate():
                return self._editor(form, latest, 400, _editor_refusal(form, "The impact report was not run"))
            try:
                draft = criteria.draft(form.next_version())
            except DomainError as error:
                form.form_errors.append(str(error))
                return self._editor(form, latest, 400, _editor_refusal(form, "The impact report was not run"))
            return self._editor(form, latest, changes=criteria.difference(latest.criteria if latest else [], draft),
                                report=impact.run(db.session, draft, utcnow()))
        if verb == "preview":
            if not form.validate():
                return self._editor(form, latest, 400, _editor_refusal(form, "The difference is not shown"))
            try:
                draft = criteria.draft(form.next_version())
            except DomainError as error:
                form.form_errors.append(str(error))
                return self._editor(form, latest, 400, _editor_refusal(form, "The difference is not shown"))
            return self._editor(form, latest, changes=criteria.difference(latest.criteria if latest else [], draft))
        values = form.values()
        index = int(number) if number.isdigit() else -1
        focus, opened = None, set()
        if verb == "add":
            values.append(dict(BLANK_CRITERION))
            index = len(values) - 1
            focus, opened = f"criteria-{index}-code", {index}
        elif not 0 <= index < len(values):
            abort(400)
        elif verb == "remove":
            values.pop(index)
        elif verb in ("up", "down"):
            other = index - 1 if verb == "up" else index + 1
            if 0 <= other < len(values):
                values[index], values[other] = values[other], values[index]
                opened = {other}
        else:
            abort(400)
        form = _draft_form(values, form.notes.data, form.based_on.data)
        return self._editor(form, latest, focus=focus, opened=opened)

    @expose("/publish", methods=["POST"])
    @only(Role.RESEARCH_LEAD)
    def publish(self):
        form = CatalogueDraftForm()
        form.publishing = True
        latest = criteria.current(db.session)

        def again(form: CatalogueDraftForm, status: int):
            return self._editor(form, latest, status, _editor_refusal(form, "Nothing was published"))

        def publish(f: CatalogueDraftForm):
            """Publish, keep the impact report of the same draft against the version it replaces (run before
            publishing, while that version is in force) and, when asked, open the re-reviews: all or nothing."""
            now = utcnow()
            respond_by = impact.deadline_from(f.rereview_deadline.data, now.date()) if f.schedule_rereviews.data else None
            definition = f.next_version()
            report = impact.run(db.session, criteria.draft(definition), now)
            catalogue = criteria.publish(db.session, current_user, definition, based_on=f.based_on_version())
            kept = impact.keep(db.session, current_user, catalogue, latest, report)
            if respond_by is not None and kept.rereviews:
                impact.schedule(db.session, current_user, catalogue, respond_by,
                                work.Policy.from_config(current_app.config))
            return catalogue, kept, respond_by is not None

        def published(result):
            catalogue, kept, asked = result
            said = (f"Criteria catalogue v{catalogue.version} is published; new reviews use it. Its impact report is "
                    f"kept with it: {_providers(kept.affected_providers)} affected.")
            if kept.respond_by is not None:
                said += (f" {_rereviews(kept.rereviews)} {'is' if kept.rereviews == 1 else 'are'} being opened "
                         f"(none for a provider no longer listed or with another request open by then), to be "
                         f"answered by {zones.day_text(kept.respond_by.date())}; this version's page shows how many "
                         f"have been opened so far.")
            elif asked:
                said += " The impact report names no provider to re-review, so none is opened."
            return flash_and_redirect(said, url_for(".version", version=catalogue.version))

        return unit_of_work.submit(form, publish, done=published, again=again)

    def _editor(self, form: CatalogueDraftForm, latest: CriteriaCatalogue | None, status: int = 200,
                refusal: Refusal | None = None, changes: list[criteria.CriterionDifference] | None = None,
                focus: str | None = None, opened: set[int] | None = None, report: impact.Report | None = None):
        """The editor with the draft as typed. Each criterion folds away (a <details>, no script) unless it needs
        looking at: new, changed in the preview, in error, or just added or moved."""
        in_force = {c.code for c in latest.criteria} if latest else set()
        edited = _edited(form, latest) if changes is None else {d.code for d in changes}
        opened = set(opened or ()) | {
            i for i, entry in enumerate(form.criteria.entries)
            if entry.form.code.data not in in_force or entry.form.code.data in edited
            or any(field.errors for field in entry.form)}
        if focus and refusal is None:
            refusal = Refusal(what="", focus=focus)  # an empty refusal shows no banner; it only focuses
        if form.rereview_deadline.data is None and not form.rereview_deadline.errors:
            form.rereview_deadline.data = utcnow().date() + timedelta(
                days=current_app.config["CRITERIA_REREVIEW_DEADLINE_DAYS"])
        return self.render("admin/catalogue/editor.html", form=form, latest=latest, in_force_codes=in_force,
                           refusal=refusal, changes=changes, editor_id=EDITOR_ID, opened=opened, report=report,
                           shown_rows=SHOWN_ROWS,
                           kinds={d.code: d.kind for d in changes} if changes is not None
                           else dict.fromkeys(edited, "edited")), status

    def _catalogue(self, version: int) -> CriteriaCatalogue:
        catalogue = db.session.scalar(select(CriteriaCatalogue).where(CriteriaCatalogue.version == version))
        if catalogue is None:
            abort(404)
        return catalogue
