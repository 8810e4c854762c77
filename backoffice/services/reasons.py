"""The one rule for the reason a person gives for a change kept in the audit trail: how short and how long
it may be. The services check both on the stripped text (require_reason); the staff pages' reason boxes check
both too (admin/forms.reason_field), so a refusal shows beside the box before the service is asked."""
from __future__ import annotations

from backoffice.services.errors import DomainError

REASON_MIN_LENGTH = 3     # characters, once stripped: a reason the audit trail can be read by
REASON_MAX_LENGTH = 2000  # characters a reason box accepts


def require_reason(reason: str | None, missing: str | None = None) -> str:
    """The stripped reason, or a refusal beside the reason field: `missing` (what the action asks for, "Give the
    reason for the suspension.") when none was given, the rule's lengths when it is too short or too long."""
    reason = (reason or "").strip()
    if not reason and missing:
        raise DomainError(missing, field="reason")
    if len(reason) < REASON_MIN_LENGTH:
        raise DomainError(f"Give a reason (at least {REASON_MIN_LENGTH} characters): it is kept in the audit trail.",
                          field="reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise DomainError(f"Keep the reason under {REASON_MAX_LENGTH} characters.", field="reason")
    return reason
