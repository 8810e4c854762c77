"""What a provider does with its organisations and listing requests: create, draft, submit, answer, withdraw.

Every function takes the acting provider account and refuses to touch an organisation the account does
not act for, so object-level access holds even if a view forgets to scope a query.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import (
    OPEN_STATES,
    Account,
    ListingStatus,
    OrganisationMember,
    Provider,
    Submission,
    SubmissionKind,
    SubmissionMessage,
    SubmissionState,
    utcnow,
)
from backoffice.services import (
    accounts,
    audit,
    concurrency,
    profile,
    provider_status,
    review,
    submissions,
)
from backoffice.services import (
    listing_rules as rules,
)
from backoffice.services.errors import DomainError, InvalidTransition, NotAllowed

S = SubmissionState
# Requests whose listing the provider edits as a draft; one of them open at a time per organisation.
LISTING_KINDS = (SubmissionKind.NEW_LISTING, SubmissionKind.UPDATE, SubmissionKind.REVERIFICATION)
EDITABLE_STATES = (S.DRAFT,)
ATTESTATION_KEY = "attestation"


class IncompleteRequest(DomainError):
    """The request lacks what the research team needs; `missing` maps field names to messages."""

    def __init__(self, missing: dict[str, str]):
        super().__init__("Complete the highlighted fields before you submit.")
        self.missing = missing

    def __reduce__(self):
        return type(self), (self.missing,), self.__dict__


@dataclass(frozen=True)
class Attestation:
    no_referral_fees: bool
    no_lead_generation: bool
    no_patient_brokering: bool
    signed_by: str

    def problems(self) -> dict[str, str]:
        missing = {name: "Confirm this statement to submit." for name in
                   ("no_referral_fees", "no_lead_generation", "no_patient_brokering") if not getattr(self, name)}
        if not (self.signed_by or "").strip():
            missing["signed_by"] = "Type your full name to sign the attestation."
        return missing


# -- access ---------------------------------------------------------------------------------------


def is_member(session: Session, account: Account, provider_id: int) -> bool:
    return session.scalar(select(OrganisationMember.id).where(
        OrganisationMember.account_id == account.id, OrganisationMember.provider_id == provider_id)) is not None


def require_member(session: Session, account: Account, provider_id: int) -> None:
    if not is_member(session, account, provider_id):
        raise NotAllowed("Your account does not act for this organisation.")


# -- the proposed listing -------------------------------------------------------------------------

_SCALAR_RULES = {"npi": rules.npi, "website": rules.website, "phone": rules.phone, "email": rules.email}
_CHILD_RULES: dict[str, dict[str, Callable[[Any], Any]]] = {
    "locations": {"state": rules.state, "zip": rules.zip_code, "phone": rules.phone,
                  "latitude": rules.latitude, "longitude": rules.longitude},
    "licences": {"state": rules.state, "expires_on": rules.future_date, "levels_of_care": rules.levels},
    "accreditations": {"expires_on": rules.future_date},
    "principals": {"npi": rules.npi},
}
_CHILD_REQUIRED = {
    "locations": ("street1", "city", "state", "zip"),
    "licences": ("state", "number", "licence_type", "expires_on"),
    "accreditations": ("body",),
    "principals": ("name", "role"),
}


def vocabularies(current: dict[str, Any] | None = None) -> dict[str, dict[str, str]]:
    """Allowed values per list field; values the current listing already holds stay allowed."""
    current = current or {}
    return {
        "levels_of_care": rules.choices(rules.LEVELS_OF_CARE, current.get("levels_of_care") or []),
        "services": rules.choices(rules.SERVICES, current.get("services") or []),
        "populations": rules.choices(rules.POPULATIONS, current.get("populations") or []),
        "payment_accepted": rules.choices(rules.PAYMENT_ACCEPTED, current.get("payment_accepted") or []),
    }


def check_profile(proposed: dict[str, Any], current: dict[str, Any] | None = None) -> None:
    """Refuse a proposed listing whose values break a rule; the forms check the same rules field by field."""
    unknown = set(proposed) - set(profile.PROFILE_FIELDS) - {ATTESTATION_KEY}
    if unknown:
        raise DomainError(f"Unknown fields: {', '.join(sorted(unknown))}.")
    for name in profile.REQUIRED_SCALARS:
        if name in proposed and not (proposed[name] or "").strip():
            raise DomainError(f"{profile.LABELS[name]} cannot be empty.")
    try:
        for name, rule in _SCALAR_RULES.items():
            if proposed.get(name):
                rule(proposed[name])
        for name, allowed in vocabularies(current).items():
            rules.subset(proposed.get(name) or [], allowed, profile.LABELS[name].lower())
        for name, field_rules in _CHILD_RULES.items():
            for item in proposed.get(name) or []:
                for field in _CHILD_REQUIRED[name]:
                    if not item.get(field):
                        raise ValueError(f"{profile.LABELS[name]}: {field.replace('_', ' ')} is required.")
                for field, field_rule in field_rules.items():
                    if item.get(field) not in (None, "", []):
                        field_rule(item[field])
                if name == "principals" and item.get("role") not in rules.PRINCIPAL_ROLES:
                    raise ValueError("Principals: choose a role from the list.")
    except ValueError as error:
        raise DomainError(str(error)) from None


def missing_for_submit(proposed: dict[str, Any]) -> dict[str, str]:
    """What the research team needs before it can review a listing request, by form field name."""
    missing = {}
    for name in ("legal_name", "public_name", "npi", "website", "phone"):
        if not proposed.get(name):
            missing[name] = f"{profile.LABELS[name]} is needed to submit."
    if not proposed.get("levels_of_care"):
        missing["levels_of_care"] = "Choose at least one level of care."
    if not proposed.get("locations"):
        missing["locations"] = "Add at least one location where you treat people."
    if not proposed.get("licences"):
        missing["licences"] = "Add the state licence that covers each level of care you list."
    if not proposed.get("principals"):
        missing["principals"] = "Name your medical or clinical director and your owners."
    return missing


# -- organisations and requests -------------------------------------------------------------------


def create_organisation(session: Session, actor: Account, legal_name: str, public_name: str) -> Submission:
    """A new organisation the actor acts for, with a draft listing request to fill in."""
    legal_name, public_name = (legal_name or "").strip(), (public_name or "").strip()
    if not legal_name or not public_name:
        raise DomainError("Give both the legal name and the name the public knows you by.")
    provider = Provider(legal_name=legal_name, public_name=public_name, levels_of_care=[], services=[],
                        populations=[], payment_accepted=[])
    session.add(provider)
    session.flush()
    audit.record(session, actor, "provider.created", "provider", provider.id,
                 after={"legal_name": legal_name, "public_name": public_name}, provider_id=provider.id)
    accounts.add_member(session, actor, actor, provider)
    return submissions.create_draft(session, actor, provider, SubmissionKind.NEW_LISTING,
                                    {"legal_name": legal_name, "public_name": public_name})


def open_listing_request(session: Session, provider: Provider) -> Submission | None:
    return session.scalar(select(Submission).where(
        Submission.provider_id == provider.id, Submission.kind.in_(LISTING_KINDS),
        Submission.state.in_(OPEN_STATES | {S.DRAFT})).order_by(Submission.id.desc()).limit(1))


def next_listing_kind(provider: Provider) -> SubmissionKind | None:
    """An unlisted organisation asks to be listed; a listed one proposes an update; others ask the team."""
    if provider.listing_status == ListingStatus.LISTED:
        return SubmissionKind.UPDATE
    if provider.listing_status == ListingStatus.UNLISTED:
        return SubmissionKind.NEW_LISTING
    return None


def start_listing_request(session: Session, actor: Account, provider: Provider) -> Submission:
    """A draft new-listing request, or for a listed organisation a draft update starting from its listing."""
    require_member(session, actor, provider.id)
    kind = next_listing_kind(provider)
    if kind is None:
        raise InvalidTransition(f"This organisation is {provider.listing_status.label}; the research team "
                                "reopens its review. Reply to their last message or write to them.")
    existing = open_listing_request(session, provider)
    if existing is not None:
        raise InvalidTransition(f"Request #{existing.id} is still {existing.state.label}: finish or withdraw it "
                                "before you start another.")
    return submissions.create_draft(session, actor, provider, kind, profile.current(provider))


def may_edit(submission: Submission) -> bool:
    """Whether the provider may still change the request's proposed listing: a listing request, as a draft."""
    return submission.kind in LISTING_KINDS and submission.state in EDITABLE_STATES


def _require_editable(session: Session, actor: Account, submission: Submission) -> None:
    require_member(session, actor, submission.provider_id)
    if submission.kind not in LISTING_KINDS:
        raise InvalidTransition("Only listing requests have a listing to edit.")
    if submission.state not in EDITABLE_STATES:
        raise InvalidTransition(f"This request is {submission.state.label}; only a draft can be changed.")


def save_draft(session: Session, actor: Account, submission: Submission, proposed: dict[str, Any],
               expected_version: int | None = None) -> None:
    """Replace the draft's proposed listing; values must follow the rules, completeness waits for submit."""
    _require_editable(session, actor, submission)
    proposed = audit.jsonable({k: v for k, v in proposed.items() if k != ATTESTATION_KEY})
    check_profile(proposed, profile.current(submission.provider))
    concurrency.lock(session, submission, expected_version)
    before = dict(submission.proposed or {})
    submissions.propose(submission, proposed)
    old, new = audit.changed(before, proposed)
    if old or new:
        audit.record(session, actor, "submission.draft_saved", "submission", submission.id,
                     before=old, after=new, provider_id=submission.provider_id)
    session.flush()


def submit(session: Session, actor: Account, submission: Submission, attestation: Attestation,
           policy: review.ReviewPolicy, expected_version: int | None = None) -> None:
    """Send a complete draft, signed with the no-brokering attestation, to the research team."""
    _require_editable(session, actor, submission)
    missing = {**missing_for_submit(submission.proposed or {}), **attestation.problems()}
    if missing:
        raise IncompleteRequest(missing)
    check_profile(submission.proposed, profile.current(submission.provider))
    concurrency.lock(session, submission, expected_version)
    signed = {**asdict(attestation), "signed_by": attestation.signed_by.strip(), "account_id": actor.id,
              "signed_at": audit.jsonable(utcnow())}
    submissions.propose(submission, {**submission.proposed, ATTESTATION_KEY: signed})
    audit.record(session, actor, "submission.attested", "submission", submission.id, after=signed,
                 provider_id=submission.provider_id)
    review.submit(session, actor, submission, policy)


def answer(session: Session, actor: Account, submission: Submission, message: str,
           expected_version: int | None = None) -> SubmissionMessage:
    """Answer the research team's question; the request goes back into review."""
    require_member(session, actor, submission.provider_id)
    answer = review.answer_info_request(session, actor, submission, message, expected_version)
    audit.record(session, actor, "submission.answered", "submission", submission.id,
                 after={"message_id": answer.id}, provider_id=submission.provider_id)
    return answer


def why_not_withdraw(submission: Submission) -> str | None:
    """Why the request cannot be withdrawn now, or None when it can (a draft or an open request)."""
    if submission.state not in OPEN_STATES | {S.DRAFT}:
        return f"This request is already {submission.state.label}."
    if review.pending_decision(submission) is not None:
        return ("The research team has decided this request and the decision is being signed off; it can no "
                "longer be withdrawn.")
    return None


def can_withdraw(submission: Submission) -> bool:
    return why_not_withdraw(submission) is None


def stops_advertising(submission: Submission) -> bool:
    """Whether withdrawing the request also ends the provider's pending application to advertise."""
    return (submission.kind == SubmissionKind.ADVERTISER_APPLICATION
            and provider_status.refusal(submission.provider, advertising="withdraw") is None)


def withdraw(session: Session, actor: Account, submission: Submission, reason: str | None = None,
             expected_version: int | None = None) -> None:
    """Withdraw a draft or open request; a pending advertiser application stops pending with it."""
    require_member(session, actor, submission.provider_id)
    refusal = why_not_withdraw(submission)
    if refusal:
        raise InvalidTransition(refusal)
    concurrency.lock(session, submission, expected_version)
    submissions.transition(session, actor, submission, S.WITHDRAWN, reason=(reason or "").strip() or None)
    if stops_advertising(submission):
        provider_status.withdraw_advertising(session, actor, submission.provider, submission)
    session.flush()
