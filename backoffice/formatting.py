"""How the staff pages write what a person reads: one format for every moment and day, words for roles,
the re-check status as it truly stands. Registered as Jinja filters by register(); Flask-Admin's columns use
the same functions (backoffice/admin/columns.py)."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from functools import cache
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo

from flask import Flask, current_app, g, has_app_context, has_request_context, request
from flask_login import current_user
from sqlalchemy import Enum as EnumType

from backoffice import zones
from backoffice.extensions import db
from backoffice.models import AdvertisingStatus, Base, Role, RoleGrantState
from backoffice.services import accounts, profile, staff_notices, time_zones

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
    """A day as '1 Dec 2026' (a moment gives its day in the reader's zone; a date is shown as it is, a day
    has no zone); nothing gives ''."""
    value = _parsed(value)
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        value = zones.as_utc(value).astimezone(viewer_zone())
    if isinstance(value, date):
        return zones.day_text(value)
    return str(value)


def when(value, seconds: bool = False) -> str:
    """A moment in the reader's time zone as '1 Dec 2026, 09:23 EST' (with seconds on request, never
    microseconds); a day as '1 Dec 2026'; nothing gives ''."""
    value = _parsed(value)
    if isinstance(value, datetime):
        return zones.moment_text(value, viewer_zone(), seconds)
    return day(value)


def viewer_zone() -> ZoneInfo:
    """The time zone the person reading this page reads dates in, worked out once per request (flask.g):
    a staff member's own choice, else DISPLAY_TIME_ZONE; a provider's organisation's zone (services/time_zones.py);
    DISPLAY_TIME_ZONE for anyone signed out and outside a request (a task, a command)."""
    if not has_request_context():
        return display_zone()
    this_request = request._get_current_object()  # type: ignore[attr-defined]
    cached = g.get("viewer_zone")
    # Keyed by the request: tests run several requests inside one application context, which share g.
    if cached is None or cached[0] is not this_request:
        cached = (this_request, zones.zone_named(_viewer_zone_name(), display_zone_name()))
        g.viewer_zone = cached
    return cached[1]


def read_as_organisation(provider) -> None:
    """A portal page about one organisation shows its dates in that organisation's zone."""
    if has_request_context():
        g.viewer_zone = (request._get_current_object(),  # type: ignore[attr-defined]
                         zones.zone_named(time_zones.organisation_zone_name(db.session, provider),
                                          display_zone_name()))


def _viewer_zone_name() -> str | None:
    if not getattr(current_user, "is_authenticated", False):
        return None
    if current_user.is_staff:
        return current_user.time_zone
    return time_zones.member_zone_name(db.session, current_user.id)


def display_zone_name() -> str:
    """The DISPLAY_TIME_ZONE setting (checked at start-up), or its default outside an application."""
    if has_app_context():
        return current_app.config.get("DISPLAY_TIME_ZONE") or zones.DEFAULT_ZONE
    return zones.DEFAULT_ZONE


def display_zone() -> ZoneInfo:
    return zones.zone_named(display_zone_name())


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
    """Look up the people behind many actor labels at once (a page of the audit log) for `actor` below. The
    first lookup of a request also names every staff member, so a page that names people row by row (a
    timeline, the work list, closed findings) runs one query for them, not one per row."""
    known = g.setdefault("actor_names", {})
    wanted = {label for label in actor_labels if label} - known.keys()
    if wanted:
        first = not g.get("staff_names_known")
        known.update(accounts.actor_names(db.session, wanted, every_staff_member=first))
        g.staff_names_known = True


def actor(label: str | None) -> str:
    """An actor as staff read it: `user:6` becomes the person's name and e-mail (accounts.actor_names); system
    jobs keep their name. The audit record keeps the label; this is only how a staff page writes it."""
    if not label:
        return ""
    know_actors([label])
    return g.actor_names[label]


# Fields of audit events whose value is an account's id: an event page names the person beside the id.
ACCOUNT_FIELDS = frozenset({"account_id", "assignee_id", "author_id", "requested_by", "requested_by_id",
                            "decided_by_id", "granted_by_id", "assessed_by_id", "second_signoff_by_id",
                            "declined_by_id"})


def account_value(value, field: str) -> str | None:
    """The person behind an account id recorded under `field` ("Name <email> (user:7)"), or None when the
    field does not hold one."""
    if field not in ACCOUNT_FIELDS or isinstance(value, bool) or not isinstance(value, int):
        return None
    label = f"user:{value}"
    name = actor(label)
    return f"{name} ({label})" if name != label else f"account {value} (no longer exists)"


def entity_text(entity_type: str | None, entity_id) -> str:
    """What an audit event is about: "submission 12"; an account is named ("account 7: Name <email>")."""
    if not entity_type:
        return ""
    if entity_type == "account" and str(entity_id).isdigit():
        name = actor(f"user:{entity_id}")
        if name != f"user:{entity_id}":
            return f"account {entity_id}: {name}"
    return f"{entity_type} {entity_id}"


def event_labels(events) -> list[str]:
    """The actor labels a page of events names: who acted, and the accounts events are about."""
    return [label for e in events for label in (
        e.actor, f"user:{e.entity_id}" if e.entity_type == "account" and str(e.entity_id).isdigit() else None)
        if label]


def person(account) -> str:
    """An account as staff read it, the same words `actor` gives: "Name <email>"."""
    if account is None:
        return ""
    return f"{account.name} <{account.email}>" if account.name else account.email


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
    "account.time_zone_changed": "time zone for dates changed",
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
    "provider.time_zone_changed": "organisation's time zone for dates changed",
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
    "reverification.opened": "re-verification request opened",
    "criteria.impact_kept": "impact report kept with the criteria version",
    "criteria.rereviews_scheduled": "re-reviews scheduled for the providers a criteria change affects",
    "criteria.rereviews_opened": "a batch of the re-reviews a criteria change scheduled opened",
    "revocation.requested": "revocation asked for",
    "revocation.declined": "revocation declined",
    "verification.granted": "verification granted",
    "verification.revoked": "verification revoked",
    "verification.expired": "verification expired",
    "listing.suspended": "listing suspended",
    **{f"advertising.{status.value}": f"advertising {status.label}" if status != AdvertisingStatus.NONE
       else "not an advertiser" for status in AdvertisingStatus},
    "advertising.copy_submitted": "advertising copy submitted with the application",
    "advertising.copy_approved": "advertising copy approved: the copy in force",
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
    "source.registered": "external source first seen",
    "source.refreshed": "external source fresh again",
    "source.stale": "external source found stale",
    "field.confirmed": "listed fields confirmed by a check",
    "exclusion_judgement.recorded": "exclusion match judged (not the same person, or confirmed)",
    "criteria.published": "criteria catalogue published",
    "notification.sent": "message sent",
    "notification.failed": "message could not be delivered",
    "notification.retried": "undelivered message sent again",
    "sweep.requested": "sweep asked for",
    "work.failed": "requested work given up after its last attempt",
    "work.retried": "failed work tried again",
    "audit.exported": "audit trail exported",
    "audit.checkpoint_published": "signed audit checkpoint published",
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
    app.jinja_env.filters["person"] = person
    app.jinja_env.globals["account_value"] = account_value
    app.jinja_env.globals["entity_text"] = entity_text
    app.jinja_env.filters["event_words"] = event_words
    app.jinja_env.filters["verification"] = verification
    app.jinja_env.globals["code_labels"] = labels
    app.jinja_env.globals["my_work"] = my_work
    app.jinja_env.tests["moment"] = is_moment
