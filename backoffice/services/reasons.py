"""The one rule for the reason a person gives for a change kept in the audit trail: how short and how long
it may be. The services check the minimum (on the stripped text); the staff pages' reason boxes check both."""
from __future__ import annotations

REASON_MIN_LENGTH = 3     # characters, once stripped: a reason the audit trail can be read by
REASON_MAX_LENGTH = 2000  # characters a reason box accepts
