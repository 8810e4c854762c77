"""Time zone, under the account menu: the zone a staff member reads every date of the staff pages in."""
from __future__ import annotations

from flask import url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, SubmitField

from backoffice import formatting, unit_of_work, zones
from backoffice.admin.base import SecuredView, flash_and_redirect
from backoffice.admin.refusals import refusal_of
from backoffice.extensions import db
from backoffice.models import Role, utcnow
from backoffice.services import time_zones


class TimeZoneForm(FlaskForm):
    # The service judges the value (a clear message for an unknown zone), not WTForms' "Not a valid choice".
    time_zone = SelectField("Show dates in", validate_choice=False)
    submit = SubmitField("Save")


class TimeZoneView(SecuredView):
    allowed_roles = frozenset(Role) - {Role.PROVIDER}

    def is_visible(self) -> bool:
        return False  # reached from the account menu, not the navigation

    @staticmethod
    def _form(formdata=True) -> TimeZoneForm:
        form = TimeZoneForm() if formdata else TimeZoneForm(formdata=None, time_zone=current_user.time_zone or "")
        form.time_zone.choices = [("", f"The default: {formatting.display_zone_name().replace('_', ' ')}"),
                                  *zones.zone_choices()]
        return form

    def _page(self, form: TimeZoneForm, status: int = 200):
        return self.render("admin/time_zone.html", form=form,
                           refusal=refusal_of(form, "Your time zone was not changed", "time-zone-form"),
                           now=formatting.when(utcnow())), status

    @expose("/", methods=["GET"])
    def index(self):
        return self._page(self._form(formdata=False))

    @expose("/", methods=["POST"])
    def save(self):
        def done(changed: bool):
            chosen = current_user.time_zone or f"the default, {formatting.display_zone_name()}"
            return flash_and_redirect(f"Dates are shown in {chosen}." if changed else "Nothing changed.",
                                      url_for(".index"))

        return unit_of_work.submit(
            self._form(), lambda form: time_zones.set_account_zone(db.session, current_user, form.time_zone.data),
            done=done, again=lambda form, status: self._page(form, status), default_field="time_zone")
