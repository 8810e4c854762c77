"""Which column of which table the audit trail must account for: the one place that decides.

Every column of every table is either *audited* (any change to it, a new row or a removed one, is written in
the same commit as an audit event that names the row) or *bookkeeping* (with the reason no event is needed).
tests/test_audit_coverage.py fails when a column is in neither list or a listed column is gone, and walks the
operations of the pages, tasks and commands to prove that no audited column changes without its event.
docs/AUDIT.md is generated from this module (`python -m backoffice.models.audit_coverage > docs/AUDIT.md`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Coverage:
    """How one table stands towards the audit trail.

    named_by: the ways an event names a row of this table, as (event entity_type, column of the row holding
    the event's entity_id). A change to an audited column needs an event of the same commit that names the row.
    any_event_names_new_rows: new rows are written with some other audited change (a notification with the
    decision it announces), so any event of their commit accounts for them; changes to existing rows still
    need an event that names them.
    named_fields: audited columns that an auditor reads from the event itself: a change to one of them in an
    existing row must appear by name in the before or after of the event that names the row.
    """

    about: str
    audited: tuple[str, ...]
    bookkeeping: Mapping[str, str] = field(default_factory=dict)
    named_by: tuple[tuple[str, str], ...] = ()
    any_event_names_new_rows: bool = False
    named_fields: frozenset[str] = frozenset()

    @property
    def columns(self) -> set[str]:
        return set(self.audited) | set(self.bookkeeping)


ROW_VERSION = "optimistic-lock counter: moves with every write of the row, which is itself audited"
UPDATED_AT = "set by the ORM on every write of the row, which is itself audited"
TRAIL = "the audit trail itself: append-only, hash-chained, guarded by database triggers"


def _all(reason: str, *columns: str) -> dict[str, str]:
    return {column: reason for column in columns}


# One entry per table. A new table or column is added here, in one of the two lists, in the same commit.
TABLES: dict[str, Coverage] = {
    "account": Coverage(
        "staff and provider accounts",
        audited=("id", "email", "name", "password_hash", "is_active", "email_confirmed_at", "created_at",
                 "last_login_at", "session_version", "password_changed_at", "totp_secret", "totp_enabled_at",
                 "totp_last_step", "time_zone"),
        named_by=(("account", "id"),),
        named_fields=frozenset({"is_active", "last_login_at", "session_version"}),
    ),
    "account_role": Coverage(
        "the roles an account holds",
        audited=("id", "account_id", "role", "granted_at", "granted_by_id"),
        named_by=(("account", "account_id"),),
    ),
    "organisation_member": Coverage(
        "provider accounts acting for an organisation",
        audited=("id", "account_id", "provider_id", "created_at"),
        named_by=(("provider", "provider_id"), ("account", "account_id")),
    ),
    "recovery_code": Coverage(
        "second-factor recovery codes (their hashes)",
        audited=("id", "account_id", "code_hash", "created_at", "used_at"),
        named_by=(("account", "account_id"),),
    ),
    "role_grant_request": Coverage(
        "staff roles asked for by one admin, approved by a second",
        audited=("id", "account_id", "role", "state", "reason", "requested_by_id", "requested_at",
                 "decided_by_id", "decided_at"),
        bookkeeping={"row_version": ROW_VERSION},
        named_by=(("account", "account_id"),),
    ),
    "failed_attempt": Coverage(
        "failed sign-in attempts counted for the lock-out",
        audited=(),
        bookkeeping=_all("a lock-out counter, removed on success and pruned when stale; a failed second factor "
                         "is audited as account.second_factor_failed", "id", "kind", "key", "attempted_at"),
    ),
    "provider": Coverage(
        "treatment providers: profile, listing, verification, advertising, re-check dates",
        audited=("id", "legal_name", "public_name", "npi", "website", "phone", "email", "levels_of_care",
                 "services", "populations", "payment_accepted", "time_zone", "listing_status", "verification_status",
                 "verified_at", "verified_until", "verified_catalogue_id", "verified_decision_id",
                 "advertising_status", "last_rechecked_at", "recheck_due_at", "import_source", "import_key",
                 "created_at"),
        bookkeeping={"updated_at": UPDATED_AT, "row_version": ROW_VERSION},
        named_by=(("provider", "id"),),
        named_fields=frozenset({"listing_status", "verification_status", "advertising_status", "verified_until",
                                "verified_decision_id", "last_rechecked_at", "recheck_due_at"}),
    ),
    "provider_code": Coverage(
        "a provider's coded lists, one row a code, kept beside them for the feed's filters",
        audited=(),
        bookkeeping=_all("a copy of provider.levels_of_care, services, populations and payment_accepted, which "
                         "are audited; rewritten from them whenever they are flushed", "kind", "code", "provider_id"),
    ),
    "location": Coverage(
        "a provider's sites",
        audited=("id", "provider_id", "street1", "street2", "city", "state", "zip", "county", "latitude",
                 "longitude", "phone"),
        named_by=(("provider", "provider_id"),),
    ),
    "licence": Coverage(
        "a provider's state licences",
        audited=("id", "provider_id", "state", "number", "licence_type", "issuing_agency", "levels_of_care",
                 "expires_on"),
        named_by=(("provider", "provider_id"), ("licence", "id")),
    ),
    "accreditation": Coverage(
        "a provider's accreditations",
        audited=("id", "provider_id", "body", "accreditation_id", "expires_on"),
        named_by=(("provider", "provider_id"), ("accreditation", "id")),
    ),
    "principal": Coverage(
        "a provider's medical director, owners and officers",
        audited=("id", "provider_id", "name", "role", "npi", "notes"),
        named_by=(("provider", "provider_id"),),
    ),
    "verification_action": Coverage(
        "revocations awaiting a second researcher's sign-off",
        audited=("id", "provider_id", "kind", "state", "reason", "requested_by_id", "requested_at",
                 "signed_off_by_id", "signed_off_at", "declined_by_id", "declined_at", "decline_reason"),
        bookkeeping={"row_version": ROW_VERSION},
        named_by=(("verification_action", "id"), ("provider", "provider_id")),
    ),
    "submission": Coverage(
        "listing requests and their state machine",
        audited=("id", "provider_id", "kind", "state", "proposed", "created_by_id", "assignee_id", "created_at",
                 "submitted_at", "first_response_at", "first_response_due", "decision_due", "closed_at",
                 "catalogue_id"),
        bookkeeping={"updated_at": UPDATED_AT, "row_version": ROW_VERSION},
        named_by=(("submission", "id"),),
        named_fields=frozenset({"state", "assignee_id", "catalogue_id"}),
    ),
    "catalogue_impact": Coverage(
        "the impact report kept with a published criteria version, and the re-reviews it scheduled",
        audited=("catalogue_id", "compared_with_id", "run_by", "run_at", "listed_providers", "affected_providers",
                 "rereviews", "scheduled", "respond_by"),
        named_by=(("criteria_catalogue", "catalogue_id"),),
    ),
    "catalogue_impact_provider": Coverage(
        "each provider a kept impact report names, with the criteria in question",
        audited=("catalogue_id", "provider_id", "provider_name", "failing", "new"),
        named_by=(("criteria_catalogue", "catalogue_id"),),
    ),
    "reverification": Coverage(
        "why and by when a re-verification request was opened, and the verification period it renews",
        audited=("submission_id", "provider_id", "cause", "reason", "respond_by", "renews_until", "catalogue_id",
                 "opened_at"),
        named_by=(("submission", "submission_id"),),
    ),
    "submission_proposed_state": Coverage(
        "the US states a request proposes, kept beside it for the queue",
        audited=("submission_id", "state"),
        named_by=(("submission", "submission_id"),),
    ),
    "submission_proposed_city": Coverage(
        "the cities a request proposes, kept beside it for the queue",
        audited=("submission_id", "city"),
        named_by=(("submission", "submission_id"),),
    ),
    "submission_transition": Coverage(
        "each step of a request's state machine",
        audited=("id", "submission_id", "from_state", "to_state", "at", "actor"),
        named_by=(("submission", "submission_id"),),
    ),
    "submission_message": Coverage(
        "questions from the research team and the provider's answers",
        audited=("id", "submission_id", "kind", "author_id", "body", "created_at"),
        named_by=(("submission", "submission_id"),),
    ),
    "document": Coverage(
        "uploaded evidence files",
        audited=("id", "provider_id", "submission_id", "uploaded_by_id", "original_name", "content_type", "size",
                 "sha256", "storage_key", "created_at"),
        named_by=(("document", "id"), ("submission", "submission_id")),
    ),
    "assessment": Coverage(
        "one criterion of one request, assessed",
        audited=("id", "submission_id", "criterion_id", "status", "note", "source", "url", "document_id",
                 "check_run_id", "check_snapshot", "carried_from_id", "assessed_by_id", "assessed_at"),
        bookkeeping={"row_version": ROW_VERSION},
        named_by=(("assessment", "id"), ("submission", "submission_id")),
    ),
    "advertising_copy": Coverage(
        "the advertising an advertiser application asks to run, and the copy approved",
        audited=("submission_id", "provider_id", "headline", "body", "claims", "landing_url", "created_at",
                 "approved_at"),
        bookkeeping={"updated_at": UPDATED_AT},
        named_by=(("submission", "submission_id"), ("provider", "provider_id")),
    ),
    "decision": Coverage(
        "research decisions and their second sign-off",
        audited=("id", "submission_id", "outcome", "status", "reason_codes", "provider_note", "internal_note",
                 "catalogue_id", "decided_by_id", "decided_at", "second_signoff_by_id", "second_signoff_at",
                 "declined_by_id", "declined_at", "decline_reason", "verified_until"),
        named_by=(("decision", "id"), ("submission", "submission_id")),
        named_fields=frozenset({"status"}),
    ),
    "criteria_catalogue": Coverage(
        "published versions of the listing criteria",
        audited=("id", "version", "published_at", "published_by", "notes"),
        named_by=(("criteria_catalogue", "id"),),
    ),
    "criterion": Coverage(
        "the criteria of one catalogue version",
        audited=("id", "catalogue_id", "position", "code", "title", "guidance", "required",
                 "required_for_advertisers", "advertisers_only", "applies_to_levels", "evidence", "automated_check",
                 "freshness_days"),
        named_by=(("criteria_catalogue", "catalogue_id"),),
    ),
    "check_run": Coverage(
        "one automated check of one provider",
        audited=(),
        bookkeeping=_all("a check run is its own record, written once and never changed; the provider's timeline "
                         "shows it beside the events, and what it changes (findings, suspension, the re-check "
                         "dates) is audited", "id", "provider_id", "check", "outcome", "summary", "evidence",
                         "source_version", "idempotency_key", "started_at", "finished_at", "duration_ms"),
    ),
    "finding": Coverage(
        "problems the checks raise, and what researchers did about them",
        audited=("id", "provider_id", "check", "subject_key", "severity", "state", "title", "detail",
                 "last_check_run_id", "opened_at", "closed_at", "closed_by", "close_reason"),
        bookkeeping={"updated_at": UPDATED_AT, "row_version": ROW_VERSION},
        named_by=(("finding", "id"),),
        named_fields=frozenset({"state", "severity", "detail", "last_check_run_id"}),
    ),
    "expiry_reminder": Coverage(
        "reminders sent before a licence, accreditation or verification expires",
        audited=("id", "provider_id", "entity_type", "entity_id", "expires_on", "days_before", "notification_id",
                 "sent_at"),
        named_by=(("licence", "entity_id"), ("accreditation", "entity_id"), ("provider", "provider_id")),
    ),
    "exclusion_source": Coverage(
        "imported exclusion-list files (OIG LEIE, state lists)",
        audited=("id", "list_name", "file_name", "file_date", "sha256", "row_count", "imported_at", "imported_by"),
        named_by=(("exclusion_source", "id"),),
    ),
    "data_source": Coverage(
        "the external sources the checks rely on (exclusion lists, NPPES) and their stale warning",
        audited=("id", "name", "stale_since"),
        bookkeeping={"last_refreshed_at": "moved by each list import, itself audited (exclusion_list.imported, "
                                          "source.refreshed), and at most hourly by an NPPES answer, whose check run "
                                          "is its record; a stale source made fresh again is audited"},
        named_by=(("data_source", "id"),),
        named_fields=frozenset({"stale_since"}),
    ),
    "field_confirmation": Coverage(
        "when each listed field of a provider was last confirmed, and by which source (published in the feed)",
        audited=("id", "provider_id", "field", "confirmed_at", "source", "check_run_id"),
        named_by=(("provider", "provider_id"),),
    ),
    "exclusion_record": Coverage(
        "the rows of the imported exclusion lists",
        audited=("id", "source_id", "list_name", "kind", "row_key", "business_name", "last_name", "first_name",
                 "middle_name", "name_key", "npi", "state", "city", "exclusion_type", "excluded_on",
                 "reinstated_on", "raw", "identity"),
        named_by=(("exclusion_source", "source_id"),),
    ),
    "exclusion_judgement": Coverage(
        "a researcher's word on a list record against a provider (not the same person, or the same), kept across "
        "imports",
        audited=("id", "provider_id", "record_identity", "party_key", "list_name", "verdict", "record_fingerprint",
                 "finding_id", "judged_by", "judged_at", "reason"),
        named_by=(("exclusion_judgement", "id"),),
    ),
    "notification": Coverage(
        "the outbox: mail to providers and staff, and its delivery",
        audited=("id", "recipient_account_id", "recipient_email", "kind", "subject", "body", "link", "created_at",
                 "sent_at", "failed_at"),
        bookkeeping={
            "delivery_state": "moves between waiting and being sent with each attempt; reaching sent or could "
                              "not be delivered is audited (sent_at, failed_at)",
            "attempts": "counted as each attempt is claimed; the count is in the event when the message is sent "
                        "or given up",
            "attempt_started_at": "the lease of the attempt in hand, so a killed worker's message is sent again",
            "next_attempt_at": "when a temporary failure is tried again (the back-off)",
            "message_id": "fixed on the first attempt and kept; named in the event when the message is sent",
            "last_reply": "the mail server's reply to the last attempt; in the event when the message is sent",
            "last_error": "the mail server's reply to a failed attempt; in the event when the message is given up",
        },
        named_by=(("notification", "id"),),
        any_event_names_new_rows=True,
        named_fields=frozenset({"sent_at", "failed_at"}),
    ),
    "work": Coverage(
        "requested work (a re-check, a scheduled check, a screening, a sweep, a signed checkpoint) kept until it is done",
        audited=("id", "kind", "target_type", "target_id", "params", "idempotency_key", "requested_by",
                 "created_at"),
        bookkeeping={
            **_all("the row's way through the broker and a worker (sent, taken, done, tried again); what the work "
                   "changes is audited, and so are a failure and a staff retry, with the state in the event",
                   "state", "lease_expires_at", "attempts", "last_error", "updated_at", "sent_at", "started_at",
                   "finished_at"),
            "max_attempts": "the attempt limit the row was written with (a setting)",
        },
        named_by=(("work", "id"),),
        any_event_names_new_rows=True,
    ),
    "staff_notice_preference": Coverage(
        "what each researcher or lead is told, and how (an e-mail at once, a daily digest, not at all)",
        audited=("account_id", "kind", "mode"),
        named_by=(("account", "account_id"),),
    ),
    "staff_digest_item": Coverage(
        "notices kept for someone's daily digest",
        audited=(),
        bookkeeping=_all("a notice waiting for the daily digest, written with the change it tells of (itself "
                         "audited); the digest it goes into is a notification, audited when sent",
                         "id", "account_id", "kind", "subject", "link", "created_at", "digested_at",
                         "notification_id"),
    ),
    "audit_event": Coverage(
        "the audit trail",
        audited=(),
        bookkeeping=_all(TRAIL, "seq", "occurred_at", "actor", "action", "entity_type", "entity_id", "provider_id",
                         "before", "after", "reason", "request_id", "ip", "prev_hash", "hash"),
    ),
    "audit_chain_lock": Coverage(
        "the head of the audit chain",
        audited=(),
        bookkeeping=_all("the chain's head and lock, moved by every commit that appends events; triggers refuse "
                         "to move it back", "id", "locked_at", "head_seq", "head_hash"),
    ),
    "audit_checkpoint": Coverage(
        "heads of the chain recorded by verification",
        audited=(),
        bookkeeping=_all("append-only record of a verified head, part of the trail's own proof", "id", "taken_at",
                         "head_seq", "head_hash"),
    ),
    "audit_verification": Coverage(
        "every verification of the chain",
        audited=(),
        bookkeeping=_all("append-only record of who verified the chain and what they found; shown as the "
                         "verification history", "id", "started_at", "finished_at", "checked", "ok", "broken_seq",
                         "problem", "run_by", "checkpoint_id"),
    ),
}


def coverage(table: str) -> Coverage:
    return TABLES[table]


def problems(metadata) -> list[str]:
    """What the decisions above miss: tables and columns of the schema in neither list, and listed ones gone."""
    found: list[str] = []
    for name, table in sorted(metadata.tables.items()):
        entry = TABLES.get(name)
        if entry is None:
            found.append(f"table {name} is not in backoffice/models/audit_coverage.py TABLES")
            continue
        columns = {column.name for column in table.columns}
        both = set(entry.audited) & set(entry.bookkeeping)
        found += [f"{name}.{c} is both audited and bookkeeping" for c in sorted(both)]
        found += [f"{name}.{c} is neither audited nor bookkeeping" for c in sorted(columns - entry.columns)]
        found += [f"{name}.{c} is listed but the table has no such column" for c in sorted(entry.columns - columns)]
        found += [f"{name}: named_fields {c} is not an audited column"
                  for c in sorted(entry.named_fields - set(entry.audited))]
        found += [f"{name}: named_by column {c} is not a column" for _, c in entry.named_by if c not in columns]
    found += [f"table {name} is listed but does not exist" for name in sorted(set(TABLES) - set(metadata.tables))]
    return found


def markdown() -> str:
    """docs/AUDIT.md: the decision for every column, as a table an auditor reads."""
    lines = [
        "# What the audit trail records",
        "",
        "Generated from `backoffice/models/audit_coverage.py` (`python -m backoffice.models.audit_coverage >"
        " docs/AUDIT.md`); `tests/test_audit_coverage.py` checks that this file matches it and that the pages,"
        " tasks and commands never change an audited column without an audit event in the same commit.",
        "",
        "A change to an **audited** column (a new row, a changed value, a removed row) is written in the same"
        " commit as an audit event that names the row. **Bookkeeping** columns change without an event, for the"
        " reason given. A column marked * is one an auditor reads from the event itself: its event names it, with"
        " its value before and after.",
        "",
        "| table | what it holds | audited | bookkeeping (why no event) |",
        "|---|---|---|---|",
    ]
    for name in sorted(TABLES):
        entry = TABLES[name]
        audited = ", ".join(f"`{c}`" + ("*" if c in entry.named_fields else "") for c in entry.audited) or "—"
        reasons: dict[str, list[str]] = {}
        for column, reason in entry.bookkeeping.items():
            reasons.setdefault(reason, []).append(f"`{column}`")
        bookkeeping = "; ".join(f"{', '.join(cols)}: {reason}" for reason, cols in reasons.items()) or "—"
        lines.append(f"| `{name}` | {entry.about} | {audited} | {bookkeeping} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
