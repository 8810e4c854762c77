"""Provider self-service accounts: registration, address confirmation and password reset.

Links are single-use because each token carries the state it is meant to change: a confirmation token
names the still-unconfirmed address, a reset token a fingerprint of the current password hash. Once used,
that state is gone and the same token no longer matches.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.orm import Session

from backoffice.auth import tokens
from backoffice.auth.passwords import hash_password, password_problem
from backoffice.models import Account, Role, utcnow
from backoffice.services import accounts, audit, outbox
from backoffice.services.errors import DomainError

CONFIRM = "confirm-email"
RESET = "reset-password"
LinkBuilder = Callable[[str], str]


class LinkExpired(DomainError):
    """The link is genuine but too old."""


class LinkInvalid(DomainError):
    """The link was already used, altered, or belongs to no account."""


@dataclass(frozen=True)
class TokenSettings:
    secret: str
    confirm_max_age: int
    reset_max_age: int

    @classmethod
    def from_config(cls, config) -> TokenSettings:
        return cls(config["SECRET_KEY"], config["CONFIRM_TOKEN_MAX_AGE_SECONDS"], config["RESET_TOKEN_MAX_AGE_SECONDS"])


def _hours(seconds: int) -> str:
    hours = max(1, round(seconds / 3600))
    return f"{hours} hour{'s' if hours != 1 else ''}" if hours < 48 else f"{hours // 24} days"


def _password_fingerprint(account: Account) -> str:
    # Not the hash itself: tokens are signed, not encrypted, and should not carry password material.
    return hashlib.sha256(account.password_hash.encode()).hexdigest()[:24]


def check_new_password(password: str, email: str | None = None) -> None:
    problem = password_problem(password, email=email)
    if problem:
        raise DomainError(problem)


# -- registration and confirmation ----------------------------------------------------------------


def register(session: Session, settings: TokenSettings, *, email: str, name: str, password: str,
             confirm_link: LinkBuilder, sign_in_link: str) -> Account | None:
    """Create an unconfirmed provider account and send its confirmation link.

    An address that already has an account gets a note instead of a second account, and the caller
    shows the same page either way, so the form does not reveal who is registered.
    """
    existing = accounts.find_by_email(session, email)
    if existing is not None:
        outbox.enqueue(session, kind="registration_exists", account=existing, link=sign_in_link,
                       subject="You already have an account",
                       body=("Someone, probably you, tried to register this address again. You already have an "
                             f"account: sign in at {sign_in_link}, or reset your password from that page."))
        # Recorded for the auditors only: the requester sees the same page as for a new address.
        audit.record(session, "system:registration", "account.registration_repeated", "account", existing.id,
                     reason="a registration for an address that already has an account: a note was mailed to it")
        return None
    account = accounts.create_account(session, "system:registration", email=email, name=name, password=password,
                                      roles=[Role.PROVIDER])
    send_confirmation(session, settings, account, confirm_link)
    return account


def send_confirmation(session: Session, settings: TokenSettings, account: Account, confirm_link: LinkBuilder) -> None:
    token = tokens.issue(settings.secret, CONFIRM, {"id": account.id, "email": account.email})
    outbox.enqueue(session, kind="confirm_email", account=account, subject="Confirm your e-mail address",
                   body=(f"Open this link to confirm your address and finish registering:\n\n{confirm_link(token)}\n\n"
                         f"The link works once and expires in {_hours(settings.confirm_max_age)}. "
                         "If you did not register, ignore this message."))


def resend_confirmation(session: Session, settings: TokenSettings, email: str, confirm_link: LinkBuilder) -> None:
    """Send a new link to an unconfirmed account; silently nothing for any other address."""
    account = accounts.find_by_email(session, email)
    if account is not None and account.is_active and account.email_confirmed_at is None:
        send_confirmation(session, settings, account, confirm_link)
        audit.record(session, "system:registration", "account.confirmation_resent", "account", account.id,
                     reason="a new confirmation link was asked for and mailed")


def _read(settings: TokenSettings, purpose: str, token: str, max_age: int) -> dict:
    try:
        return tokens.read(settings.secret, purpose, token, max_age)
    except tokens.TokenExpired:
        raise LinkExpired("This link has expired. Ask for a new one below.") from None
    except tokens.TokenInvalid:
        raise LinkInvalid("This link is not valid. Copy the whole link from the e-mail, or ask for a new one.") from None


def confirm_email(session: Session, settings: TokenSettings, token: str) -> Account:
    payload = _read(settings, CONFIRM, token, settings.confirm_max_age)
    account = session.get(Account, payload.get("id"))
    if account is None or not account.is_active or account.email != payload.get("email"):
        raise LinkInvalid("This link is not valid. Ask for a new one below.")
    if account.email_confirmed_at is not None:
        raise LinkInvalid("This link has already been used: your address is confirmed, so sign in.")
    account.email_confirmed_at = utcnow()
    audit.record(session, account, "account.email_confirmed", "account", account.id,
                 after={"email_confirmed_at": account.email_confirmed_at})
    session.flush()
    return account


# -- password reset -------------------------------------------------------------------------------


def request_reset(session: Session, settings: TokenSettings, email: str, reset_link: LinkBuilder) -> None:
    """Send a reset link to an active account; nothing for an unknown address (the page says the same)."""
    account = accounts.find_by_email(session, email)
    if account is None or not account.is_active:
        return
    send_password_link(session, settings, account, reset_link, kind="password_reset", subject="Reset your password",
                       intro="Open this link to choose a new password:",
                       outro="If you did not ask for this, ignore this message: your password stays as it is.")
    audit.record(session, "system:password-reset", "account.password_reset_requested", "account", account.id)


def send_password_link(session: Session, settings: TokenSettings, account: Account, reset_link: LinkBuilder, *,
                       kind: str, subject: str, intro: str, outro: str) -> None:
    """Mail a single-use link to choose a password (it stops working once the password changes)."""
    token = tokens.issue(settings.secret, RESET, {"id": account.id, "pw": _password_fingerprint(account)})
    outbox.enqueue(session, kind=kind, account=account, subject=subject,
                   body=(f"{intro}\n\n{reset_link(token)}\n\n"
                         f"The link works once and expires in {_hours(settings.reset_max_age)}. {outro}"))


def account_for_reset(session: Session, settings: TokenSettings, token: str) -> Account:
    """The account a reset link is for, if the link is genuine, current and unused."""
    payload = _read(settings, RESET, token, settings.reset_max_age)
    account = session.get(Account, payload.get("id"))
    if account is None or not account.is_active or payload.get("pw") != _password_fingerprint(account):
        raise LinkInvalid("This link has already been used or is no longer valid. Ask for a new one below.")
    return account


def reset_password(session: Session, settings: TokenSettings, token: str, new_password: str) -> Account:
    """Set a new password through a reset link; every signed-in session of the account ends."""
    account = account_for_reset(session, settings, token)
    check_new_password(new_password, account.email)
    account.password_hash = hash_password(new_password)
    account.password_changed_at = utcnow()
    changed: dict[str, object] = {"password": "changed"}
    # The link reached the inbox, which proves the address as well as a confirmation link would.
    if account.email_confirmed_at is None:
        account.email_confirmed_at = utcnow()
        changed["email_confirmed_at"] = account.email_confirmed_at
    audit.record(session, account, "account.password_reset", "account", account.id, after=changed)
    accounts.end_sessions(session, account, reason="the password was reset")
    return account
