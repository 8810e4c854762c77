"""Provider self-service: register, confirm the e-mail address, reset a forgotten password.

Pages that take an e-mail address answer the same whether or not an account has it, so they cannot be
used to find out who is registered. Rate limits for these pages are set in backoffice.ratelimit.
"""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, logout_user

from backoffice import unit_of_work
from backoffice.auth.access import public
from backoffice.auth.forms import EmailForm, NewPasswordForm, RegisterForm
from backoffice.extensions import db
from backoffice.links import mailed_url
from backoffice.services import provider_accounts
from backoffice.services.errors import DomainError

bp = Blueprint("account", __name__)


def token_settings() -> provider_accounts.TokenSettings:
    return provider_accounts.TokenSettings.from_config(current_app.config)


def _confirm_link(token: str) -> str:
    return mailed_url("account.confirm", token=token)


def reset_link(token: str) -> str:
    return mailed_url("account.reset", token=token)


def _sent(title: str, message: str):
    return render_template("account/sent.html", title=title, message=message)


@bp.route("/register", methods=["GET", "POST"])
@public
def register():
    def registered(form: RegisterForm):
        return _sent("Check your e-mail",
                     f"We sent a link to {form.email.data}. Open it to confirm your address, then sign in. "
                     "If nothing arrives within a few minutes, look in your spam folder or ask for a new link.")

    def again(form: RegisterForm, status: int):
        return render_template("account/register.html", form=form)

    def refused(form: RegisterForm, error, status: int):
        form.email.errors.append(str(error))
        return again(form, status)

    form = RegisterForm()
    return unit_of_work.submit(
        form, lambda form: provider_accounts.register(
            db.session, token_settings(), email=form.email.data, name=form.name.data, password=form.password.data,
            confirm_link=_confirm_link, sign_in_link=mailed_url("auth.login")),
        done=lambda _: registered(form), again=again, refused=refused)


@bp.route("/confirm/<token>")
@public
def confirm(token: str):
    def confirmed(_):
        flash("Your e-mail address is confirmed. Sign in to continue.", "success")
        return redirect(url_for("auth.login"))

    def refused(error, status: int):
        flash(str(error), "warning")
        return redirect(url_for("account.resend_confirmation"))

    return unit_of_work.perform(lambda: provider_accounts.confirm_email(db.session, token_settings(), token),
                                done=confirmed, refused=refused)


@bp.route("/confirm", methods=["GET", "POST"])
@public
def resend_confirmation():
    form = EmailForm()
    if form.validate_on_submit():
        with unit_of_work.atomic():
            provider_accounts.resend_confirmation(db.session, token_settings(), form.email.data, _confirm_link)
        return _sent("Check your e-mail", "If that address has an account waiting for confirmation, a new link "
                     "is on its way. Links from earlier messages still work until they expire.")
    return render_template("account/email_form.html", form=form, title="Confirm your e-mail address",
                           intro="Give the address you registered with and we will send a new confirmation link.")


@bp.route("/reset", methods=["GET", "POST"])
@public
def reset_request():
    form = EmailForm()
    if form.validate_on_submit():
        with unit_of_work.atomic():
            provider_accounts.request_reset(db.session, token_settings(), form.email.data, reset_link)
        return _sent("Check your e-mail", "If that address has an account, a link to choose a new password is on "
                     "its way. It works once and expires soon.")
    return render_template("account/email_form.html", form=form, title="Forgot your password?",
                           intro="Give your account's e-mail address and we will send a link to choose a new password.")


@bp.route("/reset/<token>", methods=["GET", "POST"])
@public
def reset(token: str):
    try:
        provider_accounts.account_for_reset(db.session, token_settings(), token)
    except DomainError as error:
        flash(str(error), "warning")
        return redirect(url_for("account.reset_request"))

    def changed(_):
        if current_user.is_authenticated:
            logout_user()
        flash("Your password is changed and every other session is signed out. Sign in with the new one.", "success")
        return redirect(url_for("auth.login"))

    def again(form: NewPasswordForm, status: int):
        return render_template("account/reset.html", form=form)

    def refused(form: NewPasswordForm, error, status: int):
        form.password.errors.append(str(error))
        return again(form, status)

    return unit_of_work.submit(
        NewPasswordForm(), lambda form: provider_accounts.reset_password(db.session, token_settings(), token,
                                                                         form.password.data),
        done=changed, again=again, refused=refused)
