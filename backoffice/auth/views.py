"""Sign in (password, then the second factor for staff), sign out, and the account's own security page."""
from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from backoffice import unit_of_work
from backoffice.auth.access import public, roles_required
from backoffice.auth.forms import ChangePasswordForm, EnrolForm, LoginForm, LogoutForm, SecondFactorForm
from backoffice.auth.redirects import safe_next
from backoffice.extensions import db
from backoffice.models import Account, AttemptKind, Role
from backoffice.services import accounts, lockout, mfa
from backoffice.services.errors import Conflict, DomainError

bp = Blueprint("auth", __name__)

PENDING = "second_factor_pending"
ENROL_SECRET = "second_factor_enrol_secret"
# Set when a staff member has passed the second factor; a staff session without it is ended.
PASSED = "second_factor_at"
LAST_SEEN = "last_seen"


def home_for(account) -> str:
    if account.is_authenticated and account.is_staff:
        return url_for("admin.index")
    if account.is_authenticated:
        return url_for("portal.home")
    return url_for("auth.login")


def start_session(account: Account, *, second_factor: bool) -> None:
    """A new session for the account: whatever the browser carried before is dropped (no fixation)."""
    session.clear()
    login_user(account)
    now = int(time.time())
    session[LAST_SEEN] = now
    if second_factor:
        session[PASSED] = now


def counted_attempt(kind: AttemptKind, key: str, setting: str) -> lockout.Attempt:
    """Count this attempt against its lock-out before judging it; the 429 page once the key is locked out.
    The page is the same for a known and an unknown address."""
    try:
        return lockout.begin(db.engine, kind, key, current_app.config[setting])
    except lockout.LockedOut as locked:
        abort(429, locked.limit)


@bp.route("/")
@public
def root():
    return redirect(home_for(current_user))


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    form = LoginForm()
    if form.validate_on_submit():
        # Counted (and kept) in a transaction of its own before the password is checked: a refused sign-in
        # still counts against the address.
        attempt = counted_attempt(AttemptKind.SIGN_IN, accounts.normalise_email(form.email.data),
                                  "LOGIN_ACCOUNT_RATE_LIMIT")
        try:
            with unit_of_work.atomic():
                account = accounts.admit(db.session, form.email.data, form.password.data)
                lockout.forget(db.session, attempt)
                if not account.is_staff:  # staff have a session only after the second factor
                    accounts.record_sign_in(db.session, account)
        except accounts.SignInRefused as refused:
            unit_of_work.show_beside(form, refused)
        else:
            if account.is_staff:
                session.clear()
                session[PENDING] = {"id": account.id, "version": account.session_version, "at": int(time.time()),
                                    "next": safe_next(request.args.get("next"), "")}
                return redirect(url_for("auth.second_factor" if account.has_second_factor else "auth.enrol"))
            start_session(account, second_factor=False)
            return redirect(safe_next(request.args.get("next"), home_for(account)))
    return render_template("auth/login.html", form=form)


def pending_account() -> Account | None:
    """The staff account that gave the right password in this browser a moment ago, if that still holds."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict):
        return None
    if int(time.time()) - int(pending.get("at", 0)) > current_app.config["SECOND_FACTOR_PENDING_SECONDS"]:
        return None
    account = db.session.get(Account, pending.get("id"))
    if account is None or not account.is_active or not account.is_staff \
            or account.session_version != pending.get("version"):
        return None
    return account


def _restart(message: str):
    session.pop(PENDING, None)
    session.pop(ENROL_SECRET, None)
    flash(message, "info")
    return redirect(url_for("auth.login"))


def _finish(account: Account):
    target = safe_next(session.get(PENDING, {}).get("next"), home_for(account))
    start_session(account, second_factor=True)
    return redirect(target)


@bp.route("/login/code", methods=["GET", "POST"])
@public
def second_factor():
    account = pending_account()
    if account is None or not account.has_second_factor:
        return _restart("Sign in again: the sign-in took too long or was not started.")
    form = SecondFactorForm()
    if form.validate_on_submit():
        attempt = counted_attempt(AttemptKind.SECOND_FACTOR, str(account.id), "SECOND_FACTOR_RATE_LIMIT")
        with unit_of_work.atomic():  # a wrong code is kept too: its audit event
            accepted = mfa.verify(db.session, account, form.code.data)
            if accepted:
                lockout.forget(db.session, attempt)
                accounts.record_sign_in(db.session, account)
        if accepted:
            return _finish(account)
        form.code.errors.append("That code is not right, or it was used already. Wait for the next code and "
                                "try again, or use one of your recovery codes.")
    return render_template("auth/second_factor.html", form=form), 200 if not form.errors else 400


@bp.route("/login/enrol", methods=["GET", "POST"])
@public
def enrol():
    """First sign-in of a staff member: set up the authenticator app before any staff page opens."""
    account = pending_account()
    if account is None or account.has_second_factor:
        return _restart("Sign in again: the sign-in took too long or was not started.")
    secret = session.get(ENROL_SECRET)
    if not secret:
        secret = session[ENROL_SECRET] = mfa.new_secret()
    form = EnrolForm()
    if form.validate_on_submit():
        try:
            with unit_of_work.atomic():
                codes = mfa.enrol(db.session, account, secret, form.code.data)
                accounts.record_sign_in(db.session, account)
        except Conflict as exc:
            # Set up in another window a moment ago: this window's key is dead, so it is not shown again.
            session.pop(ENROL_SECRET, None)
            flash(str(exc), "info")
            return redirect(url_for("auth.second_factor"))
        except DomainError as exc:
            form.code.errors.append(str(exc))
        else:
            target = safe_next(session.get(PENDING, {}).get("next"), home_for(account))
            start_session(account, second_factor=True)
            return render_template("auth/recovery_codes.html", codes=codes, next_url=target)
    uri = mfa.provisioning_uri(secret, account.email)
    return render_template("auth/enrol.html", form=form, secret=secret, uri=uri, qr_svg=mfa.qr_svg(uri),
                           account=account), 200 if not form.errors else 400


@bp.route("/logout", methods=["POST"])
@public
def logout():
    form = LogoutForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        with unit_of_work.atomic():
            accounts.sign_out(db.session, current_user)
        logout_user()
        session.clear()
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/security", methods=["GET", "POST"])
@roles_required(*Role)
def security():
    """Change the password (every other session ends); staff also make new recovery codes here."""
    form = ChangePasswordForm()
    codes_form = SecondFactorForm(prefix="codes")
    if form.submit.data and form.validate_on_submit():
        attempt = counted_attempt(AttemptKind.ACCOUNT_SECURITY, str(current_user.id), "LOGIN_ACCOUNT_RATE_LIMIT")
        try:
            with unit_of_work.atomic():
                accounts.change_password(db.session, current_user, form.current.data, form.password.data)
                lockout.forget(db.session, attempt)
        except DomainError as exc:
            form.current.errors.append(str(exc))
        else:
            account = db.session.get(Account, current_user.id)
            start_session(account, second_factor=account.is_staff)
            flash("Your password is changed. Every other session of your account is signed out.", "success")
            return redirect(url_for("auth.security"))
    elif codes_form.submit.data and codes_form.validate_on_submit() and current_user.has_second_factor:
        attempt = counted_attempt(AttemptKind.ACCOUNT_SECURITY, str(current_user.id), "LOGIN_ACCOUNT_RATE_LIMIT")
        codes = None
        with unit_of_work.atomic():  # a wrong code is kept too: its audit event
            if mfa.verify(db.session, current_user, codes_form.code.data):
                lockout.forget(db.session, attempt)
                codes = mfa.issue_recovery_codes(db.session, current_user)
        if codes is not None:
            return render_template("auth/recovery_codes.html", codes=codes, next_url=url_for("auth.security"))
        codes_form.code.errors.append("That code is not right, or it was used already.")
    remaining = mfa.unused_recovery_codes(db.session, current_user) if current_user.has_second_factor else None
    status = 400 if form.errors or codes_form.errors else 200
    return render_template("auth/security.html", form=form, codes_form=codes_form, remaining=remaining), status
