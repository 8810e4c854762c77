"""The staff second factor: TOTP (RFC 6238) enrolment and checks, and one-time recovery codes.

A code is accepted once only. The time step of the last accepted code is kept on the account and moved
forward by one conditional UPDATE (`... WHERE totp_last_step IS NULL OR totp_last_step < :step`), so two
requests racing with the same code cannot both win, whichever database is underneath.
"""
from __future__ import annotations

import hashlib
import io
import re
import secrets
from datetime import datetime
from typing import cast

import pyotp
import qrcode
import qrcode.image.svg
from sqlalchemy import CursorResult, Table, func, or_, select, update
from sqlalchemy.orm import Session

from backoffice.models import Account, RecoveryCode, utcnow
from backoffice.services import audit
from backoffice.services.errors import Conflict, DomainError

ISSUER = "Provider verification"
STEP_SECONDS = 30
DIGITS = 6
# Codes from one step either side of now are accepted, for clocks that drift a little.
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
# ASCII digits only: str.isdigit() also accepts other scripts' digits ("١٢٣٤٥٦"), which are not a code.
_TOTP_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The `otpauth://` URI as an inline SVG QR code (no image library, no external request)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode()
    return svg[svg.index("<svg"):]


def current_step(at: datetime | None = None) -> int:
    return int((at or utcnow()).timestamp()) // STEP_SECONDS


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(step * STEP_SECONDS)


def _cleaned(code: str) -> str:
    return "".join((code or "").split())


def _looks_like_totp(code: str) -> bool:
    return _TOTP_CODE.fullmatch(code) is not None


def _matching_step(secret: str, code: str, at: datetime | None) -> int | None:
    """The time step whose code this is (`code` already cleaned), or None."""
    if not _looks_like_totp(code):
        return None
    now = current_step(at)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if secrets.compare_digest(code_at_step(secret, step), code):
            return step
    return None


def _claim_step(session: Session, account: Account, step: int) -> bool:
    """Advance the account's last used step to `step` if it is newer; False if that step was already used."""
    result = session.execute(
        update(Account)
        .where(Account.id == account.id,
               or_(Account.totp_last_step.is_(None), Account.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult, result).rowcount != 1:
        return False
    session.refresh(account, ["totp_last_step"])
    return True


def _hash_recovery_code(code: str) -> str:
    normalised = "".join(ch for ch in code.lower() if ch.isascii() and ch.isalnum())
    return hashlib.sha256(normalised.encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def issue_recovery_codes(session: Session, account: Account) -> list[str]:
    """Replace the account's recovery codes with new ones; the plain codes are returned once, never stored."""
    session.execute(cast(Table, RecoveryCode.__table__).delete().where(RecoveryCode.account_id == account.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(account_id=account.id, code_hash=_hash_recovery_code(c)) for c in codes)
    session.flush()
    audit.record(session, account, "account.recovery_codes_issued", "account", account.id,
                 after={"count": len(codes)})
    return codes


def unused_recovery_codes(session: Session, account: Account) -> int:
    return session.scalars(
        select(func.count()).select_from(RecoveryCode)
        .where(RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))
    ).one()


def enrol(session: Session, account: Account, secret: str, code: str, at: datetime | None = None) -> list[str]:
    """Turn the second factor on once the account proves it holds the secret; returns new recovery codes."""
    if account.has_second_factor:
        raise DomainError("A second factor is already set up for this account.")
    try:
        pyotp.TOTP(secret).byte_secret()
    except ValueError:  # not Base32 (binascii.Error is a ValueError), not ASCII, or too short
        raise DomainError("The set-up key is not valid. Start the set-up again.") from None
    step = _matching_step(secret, _cleaned(code), at)
    if step is None:
        raise DomainError("That code is not right. Check the clock on your device and enter the current code.")
    # Conditional, like a code's step: of two set-ups racing (two tabs), only the first turns the factor on;
    # the other would otherwise overwrite the secret the first one's app already holds.
    claimed = cast(CursorResult, session.execute(
        update(Account)
        .where(Account.id == account.id, Account.totp_enabled_at.is_(None))
        .values(totp_secret=secret, totp_enabled_at=utcnow(), totp_last_step=step)
        .execution_options(synchronize_session=False)
    )).rowcount
    if claimed != 1:
        raise Conflict("A second factor was set up for this account a moment ago, in another window. "
                       "Enter a code from the app you set up there.")
    session.refresh(account, ["totp_secret", "totp_enabled_at", "totp_last_step"])
    audit.record(session, account, "account.second_factor_enrolled", "account", account.id)
    return issue_recovery_codes(session, account)


def verify(session: Session, account: Account, code: str, at: datetime | None = None) -> bool:
    """Check a six-digit code or a recovery code; each is accepted once only. Audited either way."""
    if not account.has_second_factor:
        return False
    cleaned = _cleaned(code)
    if cleaned.isascii() and cleaned.isdigit():  # meant as an authenticator code, even with a digit too many
        assert account.totp_secret is not None  # enrol() sets it with totp_enabled_at
        step = _matching_step(account.totp_secret, cleaned, at)
        if step is not None and _claim_step(session, account, step):
            audit.record(session, account, "account.second_factor_passed", "account", account.id)
            return True
        reason = "reused" if step is not None else "wrong"
    else:
        used = cast(CursorResult, session.execute(
            update(RecoveryCode)
            .where(RecoveryCode.account_id == account.id, RecoveryCode.code_hash == _hash_recovery_code(cleaned),
                   RecoveryCode.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )).rowcount
        if used == 1:
            audit.record(session, account, "account.recovery_code_used", "account", account.id,
                         after={"remaining": unused_recovery_codes(session, account)})
            return True
        reason = "wrong recovery code"
    audit.record(session, account, "account.second_factor_failed", "account", account.id, reason=reason)
    return False


def clear(session: Session, account: Account) -> None:
    """Remove the account's second factor and recovery codes (the staff service decides who may)."""
    account.totp_secret = None
    account.totp_enabled_at = None
    account.totp_last_step = None
    session.execute(cast(Table, RecoveryCode.__table__).delete().where(RecoveryCode.account_id == account.id))
