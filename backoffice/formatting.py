"""How the staff pages write what a person reads: one format for every moment and day, words for roles,
the re-check status as it truly stands. Registered as Jinja filters by register(); Flask-Admin's columns use
the same functions (backoffice/admin/columns.py)."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from functools import cache
from typing import Iterable, Mapping

from flask import Flask, g
from flask_login import current_user
from sqlalchemy import Enum as EnumType

from backoffice.extensions import db
from backoffice.models import AdvertisingStatus, Base, Role, RoleGrantState
from backoffice.services import accounts, profile, staff_notices

# ISO 8601 text as JSON values carry moments ("2026-12-01T09:23:45.123456+00:00") and days ("2026-12-01").
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parsed(value):
    """A datetime or date from a value that is one, or ISO text of one; anything else as it was."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if _ISO_MOMENT.match(text):
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            if _ISO_DAY.match(text):
                return date.fromisoformat(text)
        except ValueError:
            return value
    return value


def day(value) -> str:
    """A day as '1 Dec 2026' (a moment gives its UTC day); nothing gives ''."""
    value = _parsed(value)
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        value = _utc(value)
    if isinstance(value, date):
        return f"{value.day} {value:%b %Y}"
    return str(value)


def when(value, seconds: bool = False) -> str:
    """A moment as '1 Dec 2026, 09:23 UTC' (with seconds on request, never microseconds); a day as
    '1 Dec 2026'; nothing gives ''."""
    value = _parsed(value)
    if isinstance(value, datetime):
        value = _utc(value)
        return f"{value.day} {value:%b %Y}, {value.strftime('%H:%M:%S' if seconds else '%H:%M')} UTC"
    return day(value)


def _utc(value: datetime) -> datetime:
    # Naive moments only come from SQLite, which stores UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def is_moment(value) -> bool:
    """True for a datetime, a date, or ISO text of one (a JSON value that is a time)."""
    return isinstance(value, (datetime, date)) or (
        isinstance(value, str) and bool(_ISO_MOMENT.match(value.strip()) or _ISO_DAY.match(value.strip())))


def role_label(role) -> str:
    """A role in words: research_lead -> 'research lead'."""
    value = getattr(role, "value", role)
    return str(value).replace("_", " ")


def roles_text(roles) -> str:
    return ", ".join(sorted(role_label(r) for r in roles))


@cache
def labels() -> dict[str, dict[str, str]]:
    """Words for every code a staff page may show, by the name of the field it stands in: the listing
    vocabularies (profile.value_labels) and every enum column of the models (a state, a kind, an outcome)."""
    words: dict[str, dict[str, str]] = {}
    for mapper in Base.registry.mappers:
        for column in mapper.columns:
            enum_class = getattr(column.type, "enum_class", None) if isinstance(column.type, EnumType) else None
            if enum_class is not None:
                words.setdefault(column.key, {}).update({m.value: m.label for m in enum_class})
    for field, vocabulary in profile.value_labels().items():
        words[field] = {**words.get(field, {}), **vocabulary}
    return words


def know_actors(actor_labels: Iterable[str | None]) -> None:
    """Look up the people behind many actor labels at once (a page of the audit log) for `actor` below."""
    known = g.setdefault("actor_names", {})
    wanted = {label for label in actor_labels if label} - known.keys()
    if wanted:
        known.update(accounts.actor_names(db.session, wanted))


def actor(label: str | None) -> str:
    """An actor as staff read it: `user:6` becomes the person's name and e-mail (accounts.actor_names); system
    jobs keep their name. The audit record keeps the label; this is only how a staff page writes it."""
    if not label:
        return ""
    know_actors([label])
    return g.actor_names[label]


def recheck_status(last_rechecked_at: datetime | None, latest_runs: Mapping) -> str:
    """When the provider was last re-checked, as it truly stands: the last complete re-check window, and the
    newest single check run with its outcome (so a window that never completed is not read as 'never checked')."""
    runs = [run for run in latest_runs.values() if run is not None]
    newest = max(runs, key=lambda run: (run.started_at, run.id)) if runs else None
    latest = f"latest check: {newest.check.label}, {newest.outcome.label}, {when(newest.started_at)}" if newest else ""
    if last_rechecked_at is not None:
        return f"{when(last_rechecked_at)}" + (f" ({latest})" if latest else "")
    if newest is not None:
        return f"never completed; {latest}"
    return "never"


def my_work():
    """What waits for the signed-in researcher or lead (services.staff_notices.my_work), once per request."""
    if not getattr(current_user, "is_authenticated", False) or not current_user.has_role(
            Role.RESEARCHER, Role.RESEARCH_LEAD):
        return None
    if "my_work" not in g:
        g.my_work = staff_notices.my_work(db.session, current_user)
    return g.my_work


# Every action the audit trail records, in words: the audit log, an event and a provider's history show these
# beside the code (which the log's search takes). tests/test_audit_coverage.py checks that every action the code
# records is here.
EVENT_WORDS: dict[str, str] = {
    "account.created": "account created",
    "account.email_confirmed": "e-mail address confirmed",
    "account.registration_repeated":
        "registration tried again for an address that has an account (a note mailed to it)",
    "account.confirmation_resent": "confirmation link mailed again",
    "account.signed_in": "signed in",
    "account.signed_out": "signed out: every session of the account ended",
    "account.sessions_ended": "every session of the account ended",
    "account.password_changed": "password changed",
    "account.password_rehashed": "password hash renewed with stronger settings (the password is the same)",
    "account.password_reset_requested": "password reset link mailed",
    "account.password_reset": "password reset through a mailed link",
    "account.notice_preferences_changed": "notification choices changed",
    "account.second_factor_enrolled": "authenticator app set up",
    "account.second_factor_passed": "second-factor code accepted",
    "account.second_factor_failed": "second-factor code refused",
    "account.second_factor_reset": "second factor reset by an admin",
    "account.recovery_codes_issued": "recovery codes issued",
    "account.recovery_code_used": "recovery code used",
    "account.role_revoked": "role taken away",
    "account.deactivated": "account deactivated",
    "account.reactivated": "account reactivated",
    "role_grant.requested": "role asked for",
    **{f"role_grant.{state.value}": f"role request {state.label}" for state in RoleGrantState
       if state != RoleGrantState.PENDING},
    "organisation.member_added": "account added to the organisation",
    "provider.created": "provider created",
    "provider.imported": "provider imported",
    "provider.import_updated": "provider updated by an import",
    "provider.profile_applied": "approved listing details applied",
    "submission.created": "listing request created",
    "submission.draft_saved": "draft saved",
    "submission.attested": "attestation signed",
    "submission.transitioned": "listing request moved on",
    "submission.assigned": "listing request assigned",
    "submission.catalogue_fixed": "review started under the criteria catalogue of the day",
    "submission.answered": "provider answered a question",
    "document.uploaded": "document uploaded",
    "assessment.recorded": "criterion assessed",
    "assessment.carried_over": "assessment carried over from the decision in force (to be confirmed or changed)",
    "assessment.confirmed": "carried-over assessment confirmed",
    "decision.recorded": "decision recorded",
    "decision.signed_off": "decision signed off",
    "decision.signoff_declined": "sign-off declined",
    "reinstatement.opened": "reinstatement opened",
    "revocation.requested": "revocation asked for",
    "revocation.declined": "revocation declined",
    "verification.granted": "verification granted",
    "verification.revoked": "verification revoked",
    "verification.expired": "verification expired",
    "listing.suspended": "listing suspended",
    **{f"advertising.{status.value}": f"advertising {status.label}" if status != AdvertisingStatus.NONE
       else "not an advertiser" for status in AdvertisingStatus},
    "recheck.requested": "re-check asked for",
    "recheck.claimed": "re-check started by the schedule",
    "recheck.completed": "re-check completed: every check of the window ran",
    "finding.opened": "finding opened",
    "finding.seen_again": "finding seen again by a check",
    "finding.severity_changed": "finding severity changed",
    "finding.acknowledged": "finding acknowledged",
    "finding.resolved": "finding resolved",
    "finding.dismissed": "finding dismissed",
    "finding.cleared": "finding cleared by a later check",
    "finding.exclusion_confirmed": "exclusion match confirmed",
    "expiry.reminder_sent": "expiry reminder sent",
    "exclusion_list.imported": "exclusion list imported",
    "criteria.published": "criteria catalogue published",
    "notification.sent": "message sent",
    "notification.failed": "message could not be delivered",
    "notification.retried": "undelivered message sent again",
    "sweep.requested": "sweep asked for",
    "work.failed": "requested work given up after its last attempt",
    "work.retried": "failed work tried again",
    "audit.exported": "audit trail exported",
}


def event_words(action: str | None) -> str:
    """An audit action in words; one the vocabulary does not know yet reads as its code with spaces."""
    if not action:
        return ""
    return EVENT_WORDS.get(action) or action.replace(".", ": ").replace("_", " ")


def verification(provider) -> str:
    """The verification in force in words: 'verified until 1 Dec 2026', 'expired on 1 Dec 2026', 'revoked'."""
    status, until = provider.verification_now, provider.verified_until
    if until is not None and status.value == "verified":
        return f"verified until {day(until)}"
    if until is not None and status.value == "expired" and until <= datetime.now(timezone.utc):
        return f"expired on {day(until)}"
    return status.label


def register(app: Flask) -> None:
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["day"] = day
    app.jinja_env.filters["role_label"] = role_label
    app.jinja_env.filters["roles_text"] = roles_text
    app.jinja_env.filters["actor"] = actor
    app.jinja_env.filters["event_words"] = event_words
    app.jinja_env.filters["verification"] = verification
    app.jinja_env.globals["code_labels"] = labels
    app.jinja_env.globals["my_work"] = my_work
    app.jinja_env.tests["moment"] = is_moment
