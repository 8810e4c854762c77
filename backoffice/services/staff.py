"""Staff accounts and their roles, under separation of duties.

- Only admins manage staff. A role is asked for by one admin and starts only when a second admin approves;
  nobody approves a request they made or a role for themselves, so no admin can give themselves a research,
  auditor or admin role alone.
- Taking a role away or deactivating an account is one admin's act (it only lowers access), except that
  the last active admin stays, and nobody deactivates themselves. Reactivating gives no role back by itself:
  the roles the account held become requests that wait for a second admin, like any other grant.
- Resetting someone's second factor is one admin's act; the person is mailed at once, so a reset they did
  not expect is noticed.
- Every step is audited in the same transaction.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import email_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from backoffice.auth.passwords import hash_password
from backoffice.models import (
    STAFF_ROLES,
    Account,
    AccountRole,
    Role,
    RoleGrantRequest,
    RoleGrantState,
    utcnow,
)
from backoffice.services import accounts, audit, concurrency, guards, mfa, outbox, provider_accounts
from backoffice.services.errors import Conflict, DomainError
from backoffice.services.reasons import REASON_MIN_LENGTH


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN_LENGTH:
        raise DomainError("Give a reason (at least 3 characters): it is kept in the audit trail.", field="reason")
    return reason


def _managed(actor: Account, account: Account, reason: str | None, not_yourself: str) -> str:
    """The checks before an admin changes someone else's staff account; returns the cleaned reason."""
    guards.require_admin(actor)
    reason = _reason(reason)
    if account.has_role(Role.PROVIDER):
        raise DomainError("Provider accounts are not managed here.")
    if account.id == actor.id:
        raise DomainError(not_yourself)
    return reason


def _staff_role(role: Role | str) -> Role:
    try:
        role = Role(role)
    except ValueError:
        raise DomainError(f"There is no role called {role!r}.", field="roles") from None
    if role not in STAFF_ROLES:
        raise DomainError("Only staff roles are managed here; providers register themselves.", field="roles")
    return role


@dataclass(frozen=True)
class StaffRow:
    account: Account
    pending: list[RoleGrantRequest]


def staff_accounts(session: Session) -> list[StaffRow]:
    """Every account that is staff or on its way to be (no role yet, or a role pending), with pending grants."""
    pending = session.scalars(
        select(RoleGrantRequest).where(RoleGrantRequest.state == RoleGrantState.PENDING)
        .options(selectinload(RoleGrantRequest.requested_by)).order_by(RoleGrantRequest.id)
    ).all()
    by_account: dict[int, list[RoleGrantRequest]] = {}
    for grant in pending:
        by_account.setdefault(grant.account_id, []).append(grant)
    has_provider_role = select(AccountRole.id).where(
        AccountRole.account_id == Account.id, AccountRole.role == Role.PROVIDER).exists()
    rows = session.scalars(
        select(Account).where(~has_provider_role).order_by(func.lower(Account.email))
    ).all()
    return [StaffRow(account, by_account.get(account.id, [])) for account in rows]


def grants_for(session: Session, account: Account) -> list[RoleGrantRequest]:
    return list(session.scalars(
        select(RoleGrantRequest).where(RoleGrantRequest.account_id == account.id)
        .options(selectinload(RoleGrantRequest.requested_by), selectinload(RoleGrantRequest.decided_by))
        .order_by(RoleGrantRequest.id.desc())
    ))


def create_staff(session: Session, actor: Account, *, email: str, name: str, roles: list[Role | str],
                 reason: str) -> Account:
    """A new staff account with no role yet: each role asked for waits for a second admin. The caller mails
    the person a link to choose their password; nobody else ever knows it."""
    guards.require_admin(actor)
    reason = _reason(reason)
    wanted = sorted({_staff_role(r) for r in roles})
    if not wanted:
        raise DomainError("Choose at least one role.", field="roles")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise DomainError("Give the person's name (up to 200 characters).", field="name")
    try:
        email = email_validator.validate_email((email or "").strip(), check_deliverability=False).normalized.lower()
    except email_validator.EmailNotValidError as exc:
        raise DomainError(f"Enter a valid e-mail address ({exc}).") from None
    if accounts.find_by_email(session, email) is not None:
        raise DomainError(f"An account with the e-mail address {email} already exists.")
    account = Account(email=email, name=name, password_hash=hash_password(secrets.token_urlsafe(32)), roles=[])
    session.add(account)
    try:
        concurrency.flush(session)
    except Conflict:  # another admin added the same address a moment ago
        raise Conflict(f"An account with the e-mail address {email} was added a moment ago, by someone else.",
                       field="email") from None
    audit.record(session, actor, "account.created", "account", account.id,
                 after={"email": email, "name": name, "roles": []}, reason=reason)
    for role in wanted:
        request_role(session, actor, account, role, reason)
    return account


def request_role(session: Session, actor: Account, account: Account, role: Role | str, reason: str) -> RoleGrantRequest:
    """Ask for a staff role for an account; it starts when a second admin approves."""
    guards.require_admin(actor)
    role = _staff_role(role)
    reason = _reason(reason)
    if account.has_role(Role.PROVIDER):
        raise DomainError("A provider account cannot hold a staff role.")
    if account.has_role(role):
        raise DomainError(f"{account.email} already has the {role.value} role.")
    if not account.is_active:
        raise DomainError("The account is deactivated: reactivate it first.")
    open_request = session.scalar(select(RoleGrantRequest.id).where(
        RoleGrantRequest.account_id == account.id, RoleGrantRequest.role == role,
        RoleGrantRequest.state == RoleGrantState.PENDING))
    if open_request is not None:
        raise DomainError(f"The {role.value} role for {account.email} is already waiting for approval.")
    grant = RoleGrantRequest(account_id=account.id, role=role, reason=reason, requested_by_id=actor.id)
    session.add(grant)
    email = account.email  # read now: after a failed flush the session reads nothing until rolled back
    try:
        concurrency.flush(session)  # one pending request per account and role, even when two admins ask at once
    except Conflict:
        raise Conflict(f"The {role.value} role for {email} was asked for a moment ago, by someone else.",
                       field="role") from None
    audit.record(session, actor, "role_grant.requested", "account", account.id,
                 after={"grant_id": grant.id, "role": role.value}, reason=reason)
    return grant


def _pending(grant: RoleGrantRequest, expected_version: int | None) -> None:
    if grant.state != RoleGrantState.PENDING:
        raise Conflict(f"This request is already {grant.state.value}.")
    if expected_version is not None and grant.row_version != expected_version:
        raise Conflict("Someone else changed this request while you were looking at it. Reload and check.")


def approve(session: Session, actor: Account, grant: RoleGrantRequest, expected_version: int | None = None) -> None:
    """The second admin's approval: the role starts now."""
    guards.require_admin(actor)
    _pending(grant, expected_version)
    if grant.requested_by_id == actor.id:
        raise DomainError("A second admin must approve this: you asked for it.")
    if grant.account_id == actor.id:
        raise DomainError("You cannot approve a role for yourself: another admin must.")
    account = grant.account
    if not account.is_active:
        raise DomainError("The account is deactivated: reactivate it first.")
    if account.has_role(Role.PROVIDER):
        raise DomainError("A provider account cannot hold a staff role.")
    grant.state = RoleGrantState.APPROVED
    grant.decided_by_id = actor.id
    grant.decided_at = utcnow()
    if not account.has_role(grant.role):
        account.roles.append(AccountRole(role=grant.role, granted_by_id=actor.id))
    concurrency.flush(session)
    audit.record(session, actor, "role_grant.approved", "account", account.id,
                 after={"grant_id": grant.id, "role": grant.role.value, "requested_by": grant.requested_by_id})


def decline(session: Session, actor: Account, grant: RoleGrantRequest, reason: str,
            expected_version: int | None = None) -> None:
    """Turn a request down (or, for the admin who made it, withdraw it)."""
    guards.require_admin(actor)
    reason = _reason(reason)
    _pending(grant, expected_version)
    grant.state = RoleGrantState.WITHDRAWN if grant.requested_by_id == actor.id else RoleGrantState.DECLINED
    grant.decided_by_id = actor.id
    grant.decided_at = utcnow()
    concurrency.flush(session)
    audit.record(session, actor, f"role_grant.{grant.state.value}", "account", grant.account_id,
                 after={"grant_id": grant.id, "role": grant.role.value}, reason=reason)


def _active_admins(session: Session) -> int:
    return session.scalars(
        select(func.count()).select_from(AccountRole).join(Account, Account.id == AccountRole.account_id)
        .where(AccountRole.role == Role.ADMIN, Account.is_active.is_(True))
    ).one()


def _lock_active_admins(session: Session) -> None:
    """Take the active admins' role rows for this transaction (PostgreSQL), so that two changes to who is an
    active admin run one after the other; SQLite gets the same order from the write lock its flush takes."""
    session.scalars(
        select(AccountRole.id).join(Account, Account.id == AccountRole.account_id)
        .where(AccountRole.role == Role.ADMIN, Account.is_active.is_(True))
        .order_by(AccountRole.id).with_for_update(of=AccountRole)
    ).all()


def _require_an_active_admin(session: Session) -> None:
    """Counted after the change is flushed and the admins locked: two admins removing each other at the same
    moment cannot both pass, as they could when each counted before either wrote."""
    if _active_admins(session) < 1:
        raise DomainError("This is the last active admin: give someone else the admin role first.")


def revoke_role(session: Session, actor: Account, account: Account, role: Role | str, reason: str) -> None:
    """Take a staff role away; the account's sessions end so it takes effect at once."""
    guards.require_admin(actor)
    role = _staff_role(role)
    reason = _reason(reason)
    held = next((r for r in account.roles if r.role == role), None)
    if held is None:
        raise DomainError(f"{account.email} does not have the {role.value} role.")
    if role == Role.ADMIN:
        _lock_active_admins(session)
    account.roles.remove(held)
    accounts.end_sessions(session, account, actor, reason=f"the {role.value} role was revoked")
    if role == Role.ADMIN:
        _require_an_active_admin(session)
    audit.record(session, actor, "account.role_revoked", "account", account.id,
                 before={"role": role.value}, reason=reason)


def set_active(session: Session, actor: Account, account: Account, active: bool, reason: str) -> None:
    """Deactivate (every session ends, sign-in refused) or reactivate a staff account. Reactivation asks again
    for the roles the account held, so one admin cannot bring back a colleague's access alone."""
    reason = _managed(actor, account, reason, "You cannot deactivate or reactivate your own account.")
    if account.is_active == active:
        raise DomainError(f"The account is already {'active' if active else 'deactivated'}.")
    removes_an_admin = not active and account.has_role(Role.ADMIN)
    if removes_an_admin:
        _lock_active_admins(session)
    account.is_active = active
    accounts.end_sessions(session, account, actor,
                          reason="the account was reactivated" if active else "the account was deactivated")
    if removes_an_admin:
        _require_an_active_admin(session)
    audit.record(session, actor, "account.reactivated" if active else "account.deactivated", "account", account.id,
                 before={"is_active": not active}, after={"is_active": active}, reason=reason)
    if active:
        _ask_again_for_roles(session, actor, account, reason)


def _ask_again_for_roles(session: Session, actor: Account, account: Account, reason: str) -> None:
    """On reactivation each role the account held is taken away (audited like any revocation) and asked for
    again, unless a request for it is already waiting; a second admin brings it back."""
    waiting = set(session.scalars(select(RoleGrantRequest.role).where(
        RoleGrantRequest.account_id == account.id, RoleGrantRequest.state == RoleGrantState.PENDING)))
    for held in sorted(account.roles, key=lambda r: r.role.value):
        account.roles.remove(held)
        concurrency.flush(session)
        audit.record(session, actor, "account.role_revoked", "account", account.id,
                     before={"role": held.role.value}, reason=f"reactivated: asked for again ({reason})")
        if held.role not in waiting:
            request_role(session, actor, account, held.role, reason)


def reset_second_factor(session: Session, actor: Account, account: Account, reason: str) -> None:
    """Clear a staff member's second factor (a lost device): they set it up again at their next sign-in, and
    are mailed now so that a reset they did not ask for does not go unnoticed."""
    reason = _managed(actor, account, reason, "Ask another admin to reset your own second factor.")
    if not account.has_second_factor:
        raise DomainError(f"{account.email} has no second factor set up: there is nothing to reset.")
    mfa.clear(session, account)
    accounts.end_sessions(session, account, actor, reason="the second factor was reset")
    audit.record(session, actor, "account.second_factor_reset", "account", account.id, reason=reason)
    outbox.enqueue(session, kind="second_factor_reset", account=account,
                   subject="Your second factor was reset",
                   body=(f"{actor.name} ({actor.email}) reset the second factor of your staff account, giving this "
                         f"reason:\n\n{reason}\n\nYou will set up your authenticator app again the next time you "
                         "sign in, and every session of your account has been signed out. If you did not ask for "
                         "this, tell another admin at once."))


def send_welcome(session: Session, settings: provider_accounts.TokenSettings, account: Account,
                 reset_link: provider_accounts.LinkBuilder) -> None:
    """Mail a new staff member the link to choose their password."""
    provider_accounts.send_password_link(
        session, settings, account, reset_link, kind="staff_welcome", subject="Your staff account",
        intro="An account was made for you on the provider verification back-office. Open this link to choose "
              "your password:",
        outro="You will set up an authenticator app the first time you sign in. Your roles start once a second "
              "admin approves them.")
