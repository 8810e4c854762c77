"""Staff accounts for admins: add people, ask for roles, approve another admin's requests, take roles away."""
from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField, IntegerField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, HiddenInput, ListWidget

from backoffice.admin.base import SecuredView
from backoffice.auth.account_views import reset_link, token_settings
from backoffice.extensions import db
from backoffice.models import STAFF_ROLES, Account, Role, RoleGrantRequest
from backoffice.services import staff
from backoffice.services.errors import Conflict, DomainError

ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in Role if r in STAFF_ROLES]
REASON = [DataRequired("Give a reason: it is kept in the audit trail."), Length(min=3, max=2000)]


def _reason_field(label: str) -> TextAreaField:
    # Stripped like the service strips it, so "  ab  " is refused here, beside the field, not only by the service.
    return TextAreaField(label, validators=REASON, filters=[lambda value: value.strip() if value else value])


def _version_field() -> IntegerField:
    return IntegerField(widget=HiddenInput(), validators=[Optional()])


class NewStaffForm(FlaskForm):
    name = StringField("Full name", validators=[DataRequired("Give the person's name."), Length(max=200)])
    email = EmailField("Work e-mail address", validators=[DataRequired("Give an e-mail address."), Length(max=254)])
    roles = SelectMultipleField("Roles to ask for (each waits for a second admin)", choices=ROLE_CHOICES,
                                option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False))
    reason = _reason_field("Why this person needs these roles")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    reason = _reason_field("Reason")


class ReasonForm(FlaskForm):
    reason = _reason_field("Reason")
    row_version = _version_field()


class ApproveForm(FlaskForm):
    row_version = _version_field()


def _show_beside(form, exc: DomainError, default: str | None = None) -> bool:
    """Put a service's refusal under the field it is about; False when the form has no such field."""
    name = exc.field or default
    field = getattr(form, name, None) if name else None
    if field is None:
        return False
    field.errors = [*field.errors, str(exc)]
    return True


def _status(exc: DomainError) -> int:
    return 409 if isinstance(exc, Conflict) else 400


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
        form = NewStaffForm()
        if form.validate_on_submit():
            try:
                account = staff.create_staff(db.session, current_user, email=form.email.data, name=form.name.data,
                                             roles=form.roles.data, reason=form.reason.data)
                staff.send_welcome(db.session, token_settings(), account, reset_link)
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                _show_beside(form, exc, default="email")
                return self.index(form, _status(exc))
            flash(f"{account.email} is added and has been sent a link to choose a password. Their roles wait "
                  "for a second admin's approval.", "success")
            return redirect(url_for(".account", account_id=account.id))
        return self.index(form, 400)

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

    def _act(self, account_id: int, form, action, done: str, form_key: str = "reason", **extra):
        """Validate, call the service, commit; a refusal is shown beside the form and nothing is written."""
        if form.validate_on_submit():
            try:
                action(form)
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                if not _show_beside(form, exc):
                    flash(str(exc), "error")
                return self.account(account_id, {form_key: form, **extra}, _status(exc))
            flash(done, "success")
            return redirect(url_for(".account", account_id=account_id))
        return self.account(account_id, {form_key: form, **extra}, 400)

    @expose("/<int:account_id>/request-role", methods=["POST"])
    def request_role(self, account_id: int):
        account = self._account(account_id)
        return self._act(account_id, RoleForm(),
                         lambda f: staff.request_role(db.session, current_user, account, f.role.data, f.reason.data),
                         "The role is asked for; it starts when a second admin approves it.", "role")

    @expose("/<int:account_id>/revoke-role", methods=["POST"])
    def revoke_role(self, account_id: int):
        account = self._account(account_id)
        return self._act(account_id, RoleForm(),
                         lambda f: staff.revoke_role(db.session, current_user, account, f.role.data, f.reason.data),
                         "The role is taken away and the person's sessions are ended.", "role")

    @expose("/<int:account_id>/deactivate", methods=["POST"])
    def deactivate(self, account_id: int):
        account = self._account(account_id)
        return self._act(account_id, ReasonForm(),
                         lambda f: staff.set_active(db.session, current_user, account, False, f.reason.data),
                         "The account is deactivated and its sessions are ended.")

    @expose("/<int:account_id>/reactivate", methods=["POST"])
    def reactivate(self, account_id: int):
        account = self._account(account_id)
        return self._act(account_id, ReasonForm(),
                         lambda f: staff.set_active(db.session, current_user, account, True, f.reason.data),
                         "The account is active again. The roles it held are asked for again and start when a "
                         "second admin approves them.")

    @expose("/<int:account_id>/reset-second-factor", methods=["POST"])
    def reset_second_factor(self, account_id: int):
        account = self._account(account_id)
        return self._act(account_id, ReasonForm(),
                         lambda f: staff.reset_second_factor(db.session, current_user, account, f.reason.data),
                         "The second factor is reset: they set up their app again at their next sign-in.")

    def _grant(self, grant_id: int) -> RoleGrantRequest:
        return db.session.get(RoleGrantRequest, grant_id) or abort(404)

    @expose("/grants/<int:grant_id>/approve", methods=["POST"])
    def approve(self, grant_id: int):
        grant = self._grant(grant_id)
        return self._act(grant.account_id, ApproveForm(),
                         lambda f: staff.approve(db.session, current_user, grant, f.row_version.data),
                         f"Approved: {grant.account.email} now has the {grant.role.label} role.", "approve_form")

    @expose("/grants/<int:grant_id>/decline", methods=["POST"])
    def decline(self, grant_id: int):
        grant = self._grant(grant_id)
        return self._act(grant.account_id, ReasonForm(),
                         lambda f: staff.decline(db.session, current_user, grant, f.reason.data, f.row_version.data),
                         "The request is closed without granting the role.", "decline", decline_grant_id=grant.id)
