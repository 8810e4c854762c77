"""Accounts: creation, authentication, roles and session ends."""
from __future__ import annotations

import re

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from backoffice.auth.passwords import hash_password, needs_rehash, password_problem, verify_password
from backoffice.models import Account, AccountRole, OrganisationMember, Provider, Role, utcnow
from backoffice.services import audit
from backoffice.services.errors import DomainError

ACTOR_USER = re.compile(r"^user:\d{1,18}$")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_by_email(session: Session, email: str) -> Account | None:
    return session.scalar(select(Account).where(Account.email == normalise_email(email)))


def actor_names(session: Session, labels: set[str], *, every_staff_member: bool = False) -> dict[str, str]:
    """Actor labels as staff read them: `user:N` becomes "Name <email>"; system actors stay as they are.
    The one lookup behind every staff page, list and export that names who did something. With
    `every_staff_member` the same query also names every staff account (a few dozen rows), so a page that
    names people row by row needs one query, not one per row."""
    ids = {int(label.split(":", 1)[1]) for label in labels if ACTOR_USER.match(label)}
    names = {label: label for label in labels}
    wanted: ColumnElement[bool] = Account.id.in_(ids)
    if every_staff_member:
        wanted = or_(wanted, Account.id.in_(select(AccountRole.account_id).where(AccountRole.role != Role.PROVIDER)))
    for account_id, name, email in session.execute(select(Account.id, Account.name, Account.email).where(wanted)):
        names[f"user:{account_id}"] = f"{name} <{email}>"
    return names


def create_account(
    session: Session,
    actor: audit.Actor,
    *,
    email: str,
    name: str,
    password: str,
    roles: list[Role],
    email_confirmed: bool = False,
) -> Account:
    """Create an account with its roles; refuses a duplicate e-mail or a short password."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise DomainError("Enter a valid e-mail address.")
    problem = password_problem(password, email=email)
    if problem:
        raise DomainError(problem)
    if not roles:
        raise DomainError("An account needs at least one role.")
    if Role.PROVIDER in roles and len(roles) > 1:
        raise DomainError("A provider account cannot also hold a staff role.")
    if find_by_email(session, email) is not None:
        raise DomainError(f"An account with the e-mail address {email} already exists.")
    granted_by = actor if isinstance(actor, Account) else None
    account = Account(
        email=email,
        name=name.strip(),
        password_hash=hash_password(password),
        email_confirmed_at=utcnow() if email_confirmed else None,
        roles=[AccountRole(role=role, granted_by_id=granted_by.id if granted_by else None) for role in roles],
    )
    session.add(account)
    session.flush()
    audit.record(
        session, actor, "account.created", "account", account.id,
        after={"email": email, "name": account.name, "roles": sorted(r.value for r in roles)},
    )
    return account


def authenticate(session: Session, email: str, password: str) -> Account | None:
    """The active account matching the credentials, or None; the same work is done either way."""
    account = find_by_email(session, email)
    if not verify_password(account.password_hash if account else None, password):
        return None
    if account is None or not account.is_active:  # no account: verify_password was False already
        return None
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
        # The same password under stronger hashing parameters: the stored hash changed, the password did not.
        audit.record(session, account, "account.password_rehashed", "account", account.id,
                     after={"password_hash": "rehashed"})
        session.flush()
    return account


class SignInRefused(DomainError):
    """The credentials do not sign an account in now; `field` names the sign-in form's input the message is for."""


def admit(session: Session, email: str, password: str) -> Account:
    """The account these credentials sign in, or SignInRefused saying why not: credentials that match no active
    account, then a provider's e-mail address not confirmed yet, then an account without a role."""
    account = authenticate(session, email, password)
    if account is None:
        raise SignInRefused("That e-mail address and password do not match an active account.", field="password")
    if account.has_role(Role.PROVIDER) and account.email_confirmed_at is None:
        raise SignInRefused("Confirm your e-mail address first: open the link we sent when you registered, or ask "
                            "for a new one below.", field="email")
    if not account.roles:
        raise SignInRefused("Your account has no role yet. A role asked for by an admin starts once a second admin "
                            "approves it.", field="email")
    return account


def record_sign_in(session: Session, account: Account) -> None:
    """The account has a session now: for staff that is after the second factor, not after the password.
    A security event: the trail shows who signed in, when, and from which address (the event's IP)."""
    before = account.last_login_at
    account.last_login_at = utcnow()
    audit.record(session, account, "account.signed_in", "account", account.id,
                 before={"last_login_at": before}, after={"last_login_at": account.last_login_at})
    session.flush()


def sign_out(session: Session, account: Account) -> None:
    """The account signs out: every session of it ends, in this browser and any other."""
    before, after = _next_session_version(session, account)
    audit.record(session, account, "account.signed_out", "account", account.id,
                 before={"session_version": before}, after={"session_version": after})


def change_password(session: Session, account: Account, current: str, new: str) -> None:
    """A signed-in account changes its password; every session of the account ends (the caller signs this one
    in again)."""
    if not verify_password(account.password_hash, current):
        raise DomainError("Your current password is not right.")
    problem = password_problem(new, email=account.email)
    if problem:
        raise DomainError(problem)
    if verify_password(account.password_hash, new):
        raise DomainError("Choose a password different from the current one.")
    account.password_hash = hash_password(new)
    account.password_changed_at = utcnow()
    audit.record(session, account, "account.password_changed", "account", account.id)
    end_sessions(session, account, reason="the password was changed")


def end_sessions(session: Session, account: Account, actor: audit.Actor | None = None,
                 reason: str | None = None) -> None:
    """Invalidate every signed-in session of the account (actor: who ended them, the account itself by default)."""
    before, after = _next_session_version(session, account)
    audit.record(session, actor if actor is not None else account, "account.sessions_ended", "account", account.id,
                 before={"session_version": before}, after={"session_version": after}, reason=reason)


def _next_session_version(session: Session, account: Account) -> tuple[int, int]:
    before = account.session_version
    account.session_version = Account.session_version + 1
    session.flush()
    session.refresh(account, ["session_version"])
    return before, account.session_version


def load_session_account(session: Session, session_id: str) -> Account | None:
    """The account for a Flask-Login id `<account id>:<session version>`, if that session is current."""
    try:
        account_id, version = (int(part) for part in session_id.split(":", 1))
    except ValueError:
        return None
    account = session.get(Account, account_id)
    if account is None or not account.is_active or account.session_version != version:
        return None
    return account


def add_member(session: Session, actor: audit.Actor, account: Account, provider: Provider) -> OrganisationMember:
    member = OrganisationMember(account_id=account.id, provider_id=provider.id)
    session.add(member)
    session.flush()
    audit.record(
        session, actor, "organisation.member_added", "provider", provider.id,
        after={"account_id": account.id}, provider_id=provider.id,
    )
    return member


def staff_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(AccountRole.role, func.count()).group_by(AccountRole.role)
    ).all()
    return {role.value: count for role, count in rows}
