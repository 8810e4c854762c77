"""Two writers of the same rows: the loser gets a Conflict with a clear message, never a half-write."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from backoffice.models import Submission, utcnow
from backoffice.services.errors import Conflict, LostRace

CONFLICT_MESSAGE = ("Someone else changed this request while you were working on it. Nothing of yours was "
                    "saved: reload the page to see their change, then try again.")


def flush(session: Session) -> None:
    """Flush, turning a lost race (a stale version, a unique clash) into a Conflict with a clear message."""
    try:
        session.flush()
    except (LostRace, StaleDataError, IntegrityError):
        raise LostRace(CONFLICT_MESSAGE) from None


def lock(session: Session, submission: Submission, expected_version: int | None) -> None:
    """Claim the submission for this transaction: a second writer gets a Conflict, never a half-write.

    The version check catches a change made since the page was loaded; the versioned UPDATE catches a
    writer that is committing at this very moment (it waits for the row, then finds the version moved).
    """
    if expected_version is not None and expected_version != submission.row_version:
        raise Conflict(CONFLICT_MESSAGE)
    submission.updated_at = utcnow()
    flush(session)
