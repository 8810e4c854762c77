"""Browse views over the domain tables, each admitting only the roles DESIGN.md gives it."""
from __future__ import annotations

import json

from flask import url_for
from markupsafe import Markup, escape

from backoffice.admin.base import SecuredModelView
from backoffice.admin.findings import build_views as findings_views
from backoffice.models import (
    Account, CheckRun, Criterion, Finding, Provider, Role, Submission,
)

READERS = frozenset({Role.RESEARCHER, Role.RESEARCH_LEAD, Role.AUDITOR})


def _json_block(view, context, model, name):
    value = getattr(model, name)
    if value is None:
        return ""
    return Markup("<pre class='mb-0'>{}</pre>").format(json.dumps(value, indent=2, sort_keys=True))


def _verification_link(view, context, model, name):
    return Markup('<a href="{}">{}</a>').format(url_for("review.provider", provider_id=model.id), model.public_name)


def _case_link(view, context, model, name):
    return Markup('<a href="{}">#{}</a>').format(url_for("review.case", submission_id=model.id), model.id)


def _enum_value(view, context, model, name):
    value = getattr(model, name)
    return "" if value is None else escape(value.label)


class ProviderView(SecuredModelView):
    allowed_roles = READERS
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
    column_filters = ["listing_status", "verification_status", "advertising_status"]
    column_default_sort = ("id", True)
    column_formatters = {
        "public_name": _verification_link,
        "listing_status": _enum_value,
        "verification_status": _enum_value,
        "advertising_status": _enum_value,
    }


class SubmissionView(SecuredModelView):
    allowed_roles = READERS
    column_list = ["id", "provider", "kind", "state", "submitted_at", "decision_due", "assignee"]
    column_filters = ["state", "kind"]
    column_default_sort = ("id", True)
    column_details_exclude_list = ["row_version"]
    column_formatters = {"id": _case_link, "kind": _enum_value, "state": _enum_value, "proposed": _json_block}


class FindingView(SecuredModelView):
    allowed_roles = READERS
    column_list = ["id", "provider", "check", "severity", "state", "title", "opened_at"]
    column_filters = ["severity", "state", "check"]
    column_default_sort = ("id", True)
    column_formatters = {
        "check": _enum_value, "severity": _enum_value, "state": _enum_value, "detail": _json_block,
    }


class CheckRunView(SecuredModelView):
    allowed_roles = READERS
    column_list = ["id", "provider", "check", "outcome", "summary", "started_at", "duration_ms"]
    column_filters = ["check", "outcome"]
    column_default_sort = ("id", True)
    column_formatters = {"check": _enum_value, "outcome": _enum_value, "evidence": _json_block}


class CriterionView(SecuredModelView):
    allowed_roles = READERS
    column_list = ["catalogue", "position", "code", "title", "required", "required_for_advertisers", "advertisers_only"]
    column_default_sort = [("catalogue_id", True), ("position", False)]


class AccountView(SecuredModelView):
    allowed_roles = frozenset({Role.ADMIN})
    column_list = ["id", "email", "name", "roles", "is_active", "last_login_at", "created_at"]
    column_details_list = column_list + ["email_confirmed_at"]
    column_searchable_list = ["email", "name"]
    column_formatters = {
        "roles": lambda v, c, m, n: ", ".join(sorted(r.role.value for r in m.roles)),
    }


def build_views(db) -> list:
    from backoffice.admin.audit import AuditLogView, AuditVerificationView
    from backoffice.admin.review import CatalogueView, ReviewView
    from backoffice.admin.staff import StaffView

    return [
        ReviewView(name="Review queue", endpoint="review", url="/admin/review"),
        CatalogueView(name="Criteria catalogue", endpoint="catalogue", url="/admin/catalogue", category="Directory"),
        ProviderView(Provider, db, name="Providers", endpoint="providers", category="Directory"),
        SubmissionView(Submission, db, name="Submissions", endpoint="submissions", category="Directory"),
        CriterionView(Criterion, db, name="Criteria", endpoint="criteria", category="Directory"),
        FindingView(Finding, db, name="Findings", endpoint="findings", category="Re-checks"),
        CheckRunView(CheckRun, db, name="Check runs", endpoint="check_runs", category="Re-checks"),
        AuditLogView(name="Audit log", endpoint="audit", url="/admin/audit", category="Audit"),
        AuditVerificationView(name="Verification runs", endpoint="audit_verifications",
                              url="/admin/audit/verifications", category="Audit"),
        StaffView(name="Staff and roles", endpoint="staff", url="/admin/staff", category="Administration"),
        AccountView(Account, db, name="All accounts", endpoint="accounts", category="Administration"),
        *findings_views(),
    ]
