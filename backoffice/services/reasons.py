"""The one rule for the reason a person gives for a change kept in the audit trail: how short and how long
it may be. The services check the minimum (on the stripped text); the staff pages' reason boxes check both."""
from __future__ import annotations

from backoffice.services.errors import DomainError

REASON_MIN_LENGTH = 3     # characters, once stripped: a reason the audit trail can be read by
REASON_MAX_LENGTH = 2000  # characters a reason box accepts


def require_reason(reason: str | None) -> str:
    """The stripped reason, or a refusal beside the reason field."""
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN_LENGTH:
        raise DomainError(f"Give a reason (at least {REASON_MIN_LENGTH} characters): it is kept in the audit trail.",
                          field="reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise DomainError(f"Keep the reason under {REASON_MAX_LENGTH} characters.", field="reason")
    return reason
