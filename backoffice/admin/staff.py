"""Staff accounts for admins: add people, ask for roles, approve another admin's requests, take roles away."""
from __future__ import annotations

from flask import abort, flash, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from backoffice import unit_of_work
from backoffice.admin.base import SecuredView, flash_and_redirect
from backoffice.admin.forms import ReasonForm, reason_field, version_field
from backoffice.auth.account_views import reset_link, token_settings
from backoffice.extensions import db
from backoffice.models import STAFF_ROLES, Account, Role, RoleGrantRequest
from backoffice.services import staff

ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in Role if r in STAFF_ROLES]


class NewStaffForm(FlaskForm):
    name = StringField("Full name", validators=[DataRequired("Give the person's name."), Length(max=200)])
    email = EmailField("Work e-mail address", validators=[DataRequired("Give an e-mail address."), Length(max=254)])
    roles = SelectMultipleField("Roles to ask for (each waits for a second admin)", choices=ROLE_CHOICES,
                                option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False))
    reason = reason_field("Why this person needs these roles")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    reason = reason_field("Reason")


class ApproveForm(FlaskForm):
    row_version = version_field()


class StaffView(SecuredView):
    allowed_roles = frozenset({Role.ADMIN})

    @expose("/")
    def index(self, form: NewStaffForm | None = None, status: int = 200):
        rows = staff.staff_accounts(db.session)
        pending = [grant for row in rows for grant in row.pending]
        return self.render("admin/staff/index.html", rows=rows, pending=pending, form=form or NewStaffForm(),
                           approve_form=ApproveForm(formdata=None), reason_form=ReasonForm(formdata=None),
                           me=current_user), status

    @expose("/new", methods=["POST"])
    def create(self):
        def add(form: NewStaffForm) -> Account:
            account = staff.create_staff(db.session, current_user, email=form.email.data, name=form.name.data,
                                         roles=form.roles.data, reason=form.reason.data)
            staff.send_welcome(db.session, token_settings(), account, reset_link)
            return account

        return unit_of_work.submit(
            NewStaffForm(), add, default_field="email", again=self.index,
            done=lambda account: flash_and_redirect(
                f"{account.email} is added and has been sent a link to choose a password. Their roles wait "
                "for a second admin's approval.", url_for(".account", account_id=account.id)))

    def _account(self, account_id: int) -> Account:
        account = db.session.get(Account, account_id)
        if account is None or account.has_role(Role.PROVIDER):
            abort(404)
        return account

    @expose("/<int:account_id>")
    def account(self, account_id: int, forms: dict | None = None, status: int = 200):
        account = self._account(account_id)
        # Only the form that was sent shows what was typed; the others start empty.
        forms = {"role": RoleForm(formdata=None), "reason": ReasonForm(formdata=None),
                 "approve_form": ApproveForm(formdata=None), "decline": None, "decline_grant_id": None, **(forms or {})}
        return self.render("admin/staff/account.html", account=account, grants=staff.grants_for(db.session, account),
                           me=current_user, **forms), status

    def _again(self, account_id: int, form_key: str = "reason", **extra):
        """The account page again with the form as sent; a refusal the form has no field for is flashed."""
        def again(form, status: int):
            for problem in form.form_errors:
                flash(problem, "error")
            return self.account(account_id, {form_key: form, **extra}, status)
        return again

    @staticmethod
    def _done(account_id: int, message: str):
        return lambda _: flash_and_redirect(message, url_for(".account", account_id=account_id))

    @expose("/<int:account_id>/request-role", methods=["POST"])
    def request_role(self, account_id: int):
        account = self._account(account_id)
        return unit_of_work.submit(
            RoleForm(), lambda f: staff.request_role(db.session, current_user, account, f.role.data, f.reason.data),
            done=self._done(account_id, "The role is asked for; it starts when a second admin approves it."),
            again=self._again(account_id, "role"))

    @expose("/<int:account_id>/revoke-role", methods=["POST"])
    def revoke_role(self, account_id: int):
        account = self._account(account_id)
        return unit_of_work.submit(
            RoleForm(), lambda f: staff.revoke_role(db.session, current_user, account, f.role.data, f.reason.data),
            done=self._done(account_id, "The role is taken away and the person's sessions are ended."),
            again=self._again(account_id, "role"))

    @expose("/<int:account_id>/deactivate", methods=["POST"])
    def deactivate(self, account_id: int):
        account = self._account(account_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: staff.set_active(db.session, current_user, account, False, f.reason.data),
            done=self._done(account_id, "The account is deactivated and its sessions are ended."),
            again=self._again(account_id))

    @expose("/<int:account_id>/reactivate", methods=["POST"])
    def reactivate(self, account_id: int):
        account = self._account(account_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: staff.set_active(db.session, current_user, account, True, f.reason.data),
            done=self._done(account_id, "The account is active again. The roles it held are asked for again and "
                                        "start when a second admin approves them."),
            again=self._again(account_id))

    @expose("/<int:account_id>/reset-second-factor", methods=["POST"])
    def reset_second_factor(self, account_id: int):
        account = self._account(account_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: staff.reset_second_factor(db.session, current_user, account, f.reason.data),
            done=self._done(account_id, "The second factor is reset: they set up their app again at their next "
                                        "sign-in."),
            again=self._again(account_id))

    def _grant(self, grant_id: int) -> RoleGrantRequest:
        return db.session.get(RoleGrantRequest, grant_id) or abort(404)

    @expose("/grants/<int:grant_id>/approve", methods=["POST"])
    def approve(self, grant_id: int):
        grant = self._grant(grant_id)
        return unit_of_work.submit(
            ApproveForm(), lambda f: staff.approve(db.session, current_user, grant, f.row_version.data),
            done=self._done(grant.account_id, f"Approved: {grant.account.email} now has the {grant.role.label} role."),
            again=self._again(grant.account_id, "approve_form"))

    @expose("/grants/<int:grant_id>/decline", methods=["POST"])
    def decline(self, grant_id: int):
        grant = self._grant(grant_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: staff.decline(db.session, current_user, grant, f.reason.data, f.row_version.data),
            done=self._done(grant.account_id, "The request is closed without granting the role."),
            again=self._again(grant.account_id, "decline", decline_grant_id=grant.id))
