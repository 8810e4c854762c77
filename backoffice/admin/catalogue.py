"""The criteria catalogue's pages: every published version; a research lead publishes the next one."""
from __future__ import annotations

import json

from flask import url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select

from backoffice import unit_of_work
from backoffice.admin.base import SecuredView, flash_and_redirect, only
from backoffice.admin.refusals import refusal_of
from backoffice.admin.review_forms import CatalogueForm
from backoffice.extensions import db
from backoffice.models import READER_ROLES, CriteriaCatalogue, Role
from backoffice.services import criteria
from backoffice.services.errors import DomainError


class CatalogueView(SecuredView):
    """Criteria catalogue versions; a research lead publishes the next one."""

    allowed_roles = READER_ROLES

    @expose("/", methods=["GET"])
    def index(self, form: CatalogueForm | None = None, status: int = 200):
        catalogues = db.session.scalars(select(CriteriaCatalogue).order_by(CriteriaCatalogue.version.desc())).all()
        current = catalogues[0] if catalogues else None
        if form is None:
            form = CatalogueForm(formdata=None, definition=json.dumps(_definition(current), indent=2) if current else "")
        return self.render("admin/catalogue/index.html", catalogues=catalogues, current=current, form=form,
                           can_publish=current_user.has_role(Role.RESEARCH_LEAD),
                           refusal=refusal_of(form, "Nothing was published", "publish-form")), status

    @expose("/publish", methods=["POST"])
    @only(Role.RESEARCH_LEAD)
    def publish(self):
        def publish(form: CatalogueForm) -> CriteriaCatalogue:
            try:
                definition = json.loads(form.definition.data)
            except json.JSONDecodeError as exc:
                raise DomainError(f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                                  field="definition") from None
            return criteria.publish(db.session, current_user, definition)

        return unit_of_work.submit(
            CatalogueForm(), publish, default_field="definition",
            done=lambda catalogue: flash_and_redirect(
                f"Criteria catalogue v{catalogue.version} is published; new reviews use it.", url_for(".index")),
            again=lambda form, status: self.index(form, 400))


def _definition(catalogue: CriteriaCatalogue) -> dict:
    return {"notes": catalogue.notes, "criteria": [
        {"code": c.code, "title": c.title, "required": c.required,
         "required_for_advertisers": c.required_for_advertisers, "advertisers_only": c.advertisers_only,
         "applies_to_levels": c.applies_to_levels, "guidance": c.guidance, "evidence": c.evidence,
         "automated_check": c.automated_check}
        for c in catalogue.criteria]}
