"""Sign in and sign out."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from backoffice.auth.access import public
from backoffice.auth.forms import LoginForm, LogoutForm
from backoffice.auth.redirects import safe_next
from backoffice.extensions import db
from backoffice.models import Role
from backoffice.services import accounts

bp = Blueprint("auth", __name__)


def home_for(account) -> str:
    if account.is_authenticated and account.is_staff:
        return url_for("admin.index")
    if account.is_authenticated:
        return url_for("portal.home")
    return url_for("auth.login")


@bp.route("/")
@public
def root():
    return redirect(home_for(current_user))


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    form = LoginForm()
    if form.validate_on_submit():
        account = accounts.authenticate(db.session, form.email.data, form.password.data)
        if account is None:
            db.session.commit()
            form.password.errors.append("That e-mail address and password do not match an active account.")
        elif account.has_role(Role.PROVIDER) and account.email_confirmed_at is None:
            db.session.rollback()
            form.email.errors.append("Confirm your e-mail address first: open the link we sent when you "
                                     "registered, or ask for a new one below.")
        else:
            db.session.commit()
            login_user(account)
            return redirect(safe_next(request.args.get("next"), home_for(account)))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@public
def logout():
    form = LogoutForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        accounts.end_sessions(db.session, current_user)
        db.session.commit()
        logout_user()
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
