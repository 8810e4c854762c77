"""Browse views over the domain tables, each admitting only the roles DESIGN.md gives it."""
from __future__ import annotations

from flask import url_for
from markupsafe import Markup

from backoffice import formatting
from backoffice.admin.audit import AuditLogView, AuditVerificationView
from backoffice.admin.base import SecuredModelView
from backoffice.admin.catalogue import CatalogueView
from backoffice.admin.filters import HoldsNow
from backoffice.admin.findings import build_views as findings_views
from backoffice.admin.mail import MailView
from backoffice.admin.notices import NoticesView
from backoffice.admin.review import ReviewView
from backoffice.admin.staff import StaffView
from backoffice.admin.time_zone import TimeZoneView
from backoffice.admin.work import build_views as work_views
from backoffice.extensions import db
from backoffice.importers import locator
from backoffice.models import (
    READER_ROLES,
    Account,
    CheckRun,
    Criterion,
    Decision,
    ExclusionRecord,
    Finding,
    Licence,
    Provider,
    Role,
    Submission,
)
from backoffice.services import dashboard, profile, rechecks


def _verification_link(view, context, model, name):
    return Markup('<a href="{}">{}</a>').format(url_for("review.provider", provider_id=model.id), model.public_name)


def _case_link(view, context, model, name):
    return Markup('<a href="{}">#{}</a>').format(url_for("review.case", submission_id=model.id), model.id)


def _recheck_status(view, context, model, name):
    return formatting.recheck_status(model.last_rechecked_at, rechecks.latest_runs(db.session, model.id))


def _actor(view, context, model, name):
    return formatting.actor(getattr(model, name)) or None


def _import_source(view, context, model, name):
    value = getattr(model, name)
    return locator.SOURCE_NAMES.get(value, value) if value else "—"


def _check_name(view, context, model, name):
    value = getattr(model, name)
    return formatting.labels()["check"].get(value, value) if value else None


def _verification_in_force(view, context, model, name):
    return model.verification_now.label


def _advertising_in_force(view, context, model, name):
    return model.advertising_now.label


# The statuses in force (Provider.is_verified): a lapsed verification reads expired before the sweep records it.
IN_FORCE = {"verification_status": _verification_in_force, "advertising_status": _advertising_in_force}


def _account(view, context, model, name):
    """An account id column (`decided_by_id`) as the person's name, like every other actor on staff pages."""
    value = getattr(model, name)
    return formatting.actor(f"user:{value}") if value else None


def _decision_case(view, context, model, name):
    return Markup('<a href="{}">request #{}</a>').format(
        url_for("review.case", submission_id=model.submission_id), model.submission_id)


def _reason_codes(view, context, model, name):
    return ", ".join(code.replace("_", " ") for code in model.reason_codes or ()) or None


# The exclusion lists the importer reads (checks/exclusion_lists.FORMATS), by the names people know them by.
EXCLUSION_LISTS = {"oig_leie": "OIG LEIE (federal)", "ny_omig": "New York OMIG", "pa_medicheck": "Pennsylvania Medicheck"}


def _exclusion_list(view, context, model, name):
    return EXCLUSION_LISTS.get(model.list_name, model.list_name)


def _roles(view, context, model, name):
    return formatting.roles_text(r.role for r in model.roles) or "none"


# Headings as a person writes them, where Flask-Admin's own (from the column name) would not be.
COLUMN_LABELS = {
    "npi": "NPI", "last_rechecked_at": "Last re-checked", "recheck_due_at": "Re-check due",
    "verified_at": "Verified on", "verified_until": "Verified until", "duration_ms": "Duration (ms)",
    "email": "E-mail", "is_active": "Active", "last_login_at": "Last sign-in", "email_confirmed_at": "E-mail confirmed",
    "applies_to_levels": "Applies to levels of care", "required_for_advertisers": "Required for advertisers",
    "advertisers_only": "Advertisers only", "closed_by": "Closed by", "url": "URL", "id": "ID",
    "freshness_days": "Freshness limit (days)", "subject_key": "Subject",
    **profile.LABELS,
}


class ProviderView(SecuredModelView):
    allowed_roles = READER_ROLES
    noun = ("provider", "providers")
    column_list = [
        "id", "public_name", "npi", "listing_status", "verification_status", "verified_until",
        "advertising_status", "recheck_due_at",
    ]
    column_details_list = [
        "id", "legal_name", "public_name", "npi", "website", "phone", "email", "levels_of_care",
        "services", "populations", "payment_accepted", "locations", "licences", "accreditations",
        "principals", "listing_status", "verification_status", "verified_at", "verified_until",
        "advertising_status", "last_rechecked_at", "recheck_due_at", "import_source", "created_at",
        "updated_at",
    ]
    column_searchable_list = ["public_name", "npi"]
    column_filters = ["listing_status", "verification_status", "advertising_status",
                      HoldsNow(Provider.id, "Due for re-check", dashboard.due_for_recheck),
                      HoldsNow(Provider.id, "Verification ends within 30 days", dashboard.verification_expiring),
                      HoldsNow(Provider.id, "Active advertiser", Provider.is_active_advertiser)]
    column_default_sort = ("id", True)
    column_labels = COLUMN_LABELS
    column_formatters = {"public_name": _verification_link, **IN_FORCE}
    column_formatters_detail = {"public_name": _verification_link, "last_rechecked_at": _recheck_status,
                                "import_source": _import_source, **IN_FORCE}


class SubmissionView(SecuredModelView):
    allowed_roles = READER_ROLES
    noun = ("request", "requests")
    column_list = ["id", "provider", "kind", "state", "submitted_at", "decision_due", "assignee"]
    column_filters = ["state", "kind"]
    column_default_sort = ("id", True)
    column_labels = COLUMN_LABELS
    column_formatters = {"id": _case_link}


class FindingView(SecuredModelView):
    allowed_roles = READER_ROLES
    noun = ("finding", "findings")
    column_list = ["id", "provider", "check", "severity", "state", "title", "opened_at"]
    column_filters = ["severity", "state", "check"]
    column_default_sort = ("id", True)
    column_labels = COLUMN_LABELS
    column_formatters = {"closed_by": _actor}


class CheckRunView(SecuredModelView):
    allowed_roles = READER_ROLES
    noun = ("check run", "check runs")
    column_list = ["id", "provider", "check", "outcome", "summary", "started_at", "duration_ms"]
    column_filters = ["check", "outcome"]
    column_default_sort = ("id", True)
    column_labels = COLUMN_LABELS


class CriterionView(SecuredModelView):
    allowed_roles = READER_ROLES
    noun = ("criterion", "criteria")
    column_list = ["catalogue", "position", "code", "title", "required", "required_for_advertisers", "advertisers_only"]
    column_default_sort = [("catalogue_id", True), ("position", False)]
    column_labels = COLUMN_LABELS
    column_formatters = {"automated_check": _check_name}


class LicenceView(SecuredModelView):
    """Every provider's state licences, the soonest to expire first: what the licence-expiry check reads."""
    allowed_roles = READER_ROLES
    noun = ("licence", "licences")
    column_list = ["provider", "state", "number", "licence_type", "issuing_agency", "levels_of_care", "expires_on"]
    column_details_list = column_list
    column_searchable_list = ["number"]
    column_filters = ["state", "expires_on"]
    column_default_sort = ("expires_on", False)
    column_labels = {**COLUMN_LABELS, "licence_type": "Type", "issuing_agency": "Issued by",
                     "expires_on": "Expires on"}


class DecisionView(SecuredModelView):
    allowed_roles = READER_ROLES
    noun = ("decision", "decisions")
    column_list = ["id", "submission_id", "outcome", "status", "decided_by_id", "decided_at", "verified_until"]
    column_details_list = [
        "id", "submission_id", "outcome", "status", "reason_codes", "provider_note", "internal_note", "catalogue",
        "decided_by_id", "decided_at", "second_signoff_by_id", "second_signoff_at", "declined_by_id",
        "declined_at", "decline_reason", "verified_until",
    ]
    column_filters = ["outcome", "status"]
    column_default_sort = ("id", True)
    column_labels = {**COLUMN_LABELS, "submission_id": "Request", "reason_codes": "Reasons",
                     "decided_by_id": "Decided by", "second_signoff_by_id": "Signed off by",
                     "second_signoff_at": "Signed off at", "declined_by_id": "Declined by"}
    column_formatters = {"submission_id": _decision_case, "decided_by_id": _account}
    column_formatters_detail = {"submission_id": _decision_case, "reason_codes": _reason_codes,
                                "decided_by_id": _account, "second_signoff_by_id": _account,
                                "declined_by_id": _account}


class ExclusionRecordView(SecuredModelView):
    """The imported exclusion lists (LEIE and the like), row by row, as the NOT_EXCLUDED check matches them."""
    allowed_roles = READER_ROLES
    noun = ("exclusion record", "exclusion records")
    column_list = ["id", "list_name", "kind", "business_name", "last_name", "first_name", "npi", "state",
                   "excluded_on", "reinstated_on"]
    column_details_exclude_list = ["row_key", "name_key"]
    column_searchable_list = ["business_name", "last_name", "npi"]
    column_filters = ["list_name", "kind", "state"]
    column_default_sort = ("id", True)
    column_labels = {**COLUMN_LABELS, "list_name": "Exclusion list", "raw": "Row as imported"}
    column_formatters = {"list_name": _exclusion_list}


class AccountView(SecuredModelView):
    allowed_roles = frozenset({Role.ADMIN})
    noun = ("account", "accounts")
    column_list = ["id", "email", "name", "roles", "is_active", "last_login_at", "created_at"]
    column_details_list = column_list + ["email_confirmed_at"]
    column_searchable_list = ["email", "name"]
    column_labels = COLUMN_LABELS
    column_formatters = {"roles": _roles}


def build_views(db) -> list:
    return [
        ReviewView(name="Review queue", endpoint="review", url="/admin/review"),
        CatalogueView(name="Criteria catalogue", endpoint="catalogue", url="/admin/catalogue", category="Directory"),
        ProviderView(Provider, db, name="Providers", endpoint="providers", category="Directory"),
        SubmissionView(Submission, db, name="Submissions", endpoint="submissions", category="Directory"),
        CriterionView(Criterion, db, name="Criteria", endpoint="criteria", category="Directory"),
        FindingView(Finding, db, name="Findings", endpoint="findings", category="Re-checks"),
        LicenceView(Licence, db, name="Licences", endpoint="licences", category="Directory"),
        DecisionView(Decision, db, name="Decisions", endpoint="decisions", category="Directory"),
        CheckRunView(CheckRun, db, name="Check runs", endpoint="check_runs", category="Re-checks"),
        ExclusionRecordView(ExclusionRecord, db, name="Exclusion records", endpoint="exclusion_records",
                            category="Re-checks"),
        AuditLogView(name="Audit log", endpoint="audit", url="/admin/audit", category="Audit"),
        AuditVerificationView(name="Verification runs", endpoint="audit_verifications",
                              url="/admin/audit/verifications", category="Audit"),
        StaffView(name="Staff and roles", endpoint="staff", url="/admin/staff", category="Administration"),
        AccountView(Account, db, name="All accounts", endpoint="accounts", category="Administration"),
        MailView(name="Outgoing mail", endpoint="mail", url="/admin/mail"),
        NoticesView(name="Notifications", endpoint="notices", url="/admin/notifications"),
        TimeZoneView(name="Time zone", endpoint="time_zone", url="/admin/time-zone"),
        *findings_views(),
        *work_views(),
    ]
