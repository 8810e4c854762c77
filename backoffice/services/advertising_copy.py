"""An advertiser application's copy: what the provider asks to run, the rules it must meet, what stands in the
way of ADVERTISER_STANDARDS, and the copy in force once approved.

Both the application (services/advertising.py) and the review (services/review.py) read these rules, so they
live here, below both.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from backoffice.models import (
    AdvertisingCopy,
    AssessmentStatus,
    Provider,
    Submission,
    SubmissionKind,
    utcnow,
)
from backoffice.services import audit, concurrency
from backoffice.services.errors import DomainError

STANDARDS = "ADVERTISER_STANDARDS"
ACCREDITATION = "ACCREDITATION"
HEADLINE_MAX = 120
TEXT_MAX = 1000
CLAIMS_MAX = 10
CLAIM_MAX = 200
URL_MAX = 500
# What the application page tells the provider before they type.
LIMITS = {"headline": HEADLINE_MAX, "text": TEXT_MAX, "claims": CLAIMS_MAX, "claim": CLAIM_MAX, "url": URL_MAX}


@dataclass(frozen=True)
class Copy:
    """The advertisement as the provider typed it: a headline, its text, its factual claims, its landing page."""

    headline: str
    text: str
    claims: tuple[str, ...]
    landing_url: str

    @classmethod
    def from_form(cls, headline: str | None, text: str | None, claims: str | None, landing_url: str | None) -> Copy:
        """The copy from the application form: claims one per line, blank lines dropped."""
        lines = tuple(line.strip() for line in (claims or "").splitlines())
        return cls(headline=(headline or "").strip(), text=(text or "").strip(),
                   claims=tuple(line for line in lines if line), landing_url=(landing_url or "").strip())


# -- the rules, one per field (the form shows each message beside its field; the service checks them all) --


def headline(value: str) -> str:
    line = (value or "").strip()
    if not line:
        raise ValueError("Write the headline of your advertisement.")
    if "\n" in line or "\r" in line:
        raise ValueError("The headline is a single line.")
    if len(line) > HEADLINE_MAX:
        raise ValueError(f"Keep the headline to at most {HEADLINE_MAX} characters (it has {len(line)}).")
    return line


def text(value: str) -> str:
    body = (value or "").strip()
    if not body:
        raise ValueError("Write the text of your advertisement.")
    if len(body) > TEXT_MAX:
        raise ValueError(f"Keep the text to at most {TEXT_MAX:,} characters (it has {len(body):,}).")
    return body


def claims(values: Iterable[str]) -> tuple[str, ...]:
    items = tuple(v.strip() for v in values if v and v.strip())
    if len(items) > CLAIMS_MAX:
        raise ValueError(f"List at most {CLAIMS_MAX} claims (you listed {len(items)}); keep the ones that matter most.")
    for number, claim in enumerate(items, 1):
        if len(claim) > CLAIM_MAX:
            raise ValueError(f"Claim {number} is {len(claim)} characters; keep each claim to at most {CLAIM_MAX}.")
    if len({c.casefold() for c in items}) != len(items):
        raise ValueError("The same claim is listed twice; list each claim once.")
    return items


def website_host(website: str | None) -> str | None:
    """The host of the provider's listed website, without a leading "www."; None without a usable website."""
    try:
        host = urlsplit((website or "").strip()).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def landing_url(value: str, website: str | None) -> str:
    """An http(s) page on the provider's own website (its host or a subdomain of it), as WEBSITE_TRANSPARENT
    verified it: an advertisement must not send people to somebody else's site."""
    url = (value or "").strip()
    if not url:
        raise ValueError("Give the address of the page your advertisement links to.")
    if len(url) > URL_MAX:
        raise ValueError(f"Keep the landing page address to at most {URL_MAX} characters.")
    if any(ch.isspace() for ch in url):
        raise ValueError("The landing page address must not contain spaces.")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError("This is not a valid web address.") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("Enter the full address of the landing page, starting with https:// or http://.")
    if parts.username or parts.password:
        raise ValueError("The landing page address must not contain a user name or password.")
    own = website_host(website)
    if own is None:
        raise ValueError("Your listing has no website. The landing page must be on your own website: add it "
                         "to your listing through an update first.")
    host = parts.hostname.lower().rstrip(".")
    if host != own and not host.endswith("." + own):
        raise ValueError(f"The landing page must be on your own website, {own} (or a subdomain of it), "
                         f"as listed in the directory; {host} is not.")
    return url


def validated(copy: Copy, provider: Provider) -> Copy:
    """The copy with every rule applied; the first problem refused under the field it is about."""
    field = "headline"
    try:
        checked_headline = headline(copy.headline)
        field = "text"
        checked_text = text(copy.text)
        field = "claims"
        checked_claims = claims(copy.claims)
        field = "landing_url"
        checked_url = landing_url(copy.landing_url, provider.website)
    except ValueError as error:
        raise DomainError(str(error), field=field) from None
    return Copy(checked_headline, checked_text, checked_claims, checked_url)


# -- the copy of an application -------------------------------------------------------------------


def snapshot(row: AdvertisingCopy) -> dict:
    return {"headline": row.headline, "body": row.body, "claims": list(row.claims or []),
            "landing_url": row.landing_url}


def attach(session: Session, actor: audit.Actor, application: Submission, copy: Copy) -> AdvertisingCopy:
    """Write the copy of a new advertiser application, checked and audited, in the caller's transaction."""
    copy = validated(copy, application.provider)
    row = AdvertisingCopy(submission_id=application.id, provider_id=application.provider_id,
                          headline=copy.headline, body=copy.text, claims=list(copy.claims),
                          landing_url=copy.landing_url)
    session.add(row)
    concurrency.flush(session)
    audit.record(session, actor, "advertising.copy_submitted", "submission", application.id, after=snapshot(row),
                 provider_id=application.provider_id)
    return row


def copy_of(session: Session, submission: Submission) -> AdvertisingCopy | None:
    if submission.kind != SubmissionKind.ADVERTISER_APPLICATION:
        return None
    return session.get(AdvertisingCopy, submission.id)


def standards_problems(session: Session, submission: Submission) -> list[str]:
    """What stands in the way of ADVERTISER_STANDARDS on this application, in words; empty when nothing does."""
    if submission.kind != SubmissionKind.ADVERTISER_APPLICATION:
        return []
    problems = []
    if copy_of(session, submission) is None:
        problems.append(f"{STANDARDS} cannot be met: the application has no advertising copy.")
    accreditation = next((a for a in submission.assessments if a.criterion.code == ACCREDITATION), None)
    if accreditation is None or accreditation.status == AssessmentStatus.PENDING:
        problems.append(f"{STANDARDS} cannot be met: {ACCREDITATION} is not yet assessed as met.")
    elif accreditation.status != AssessmentStatus.MET:
        problems.append(f"{STANDARDS} cannot be met: {ACCREDITATION} is assessed "
                        f"{accreditation.status.label}.")
    return problems


def require_standards_can_be_met(session: Session, submission: Submission, criterion_code: str,
                                 status: AssessmentStatus) -> None:
    """Refuse ADVERTISER_STANDARDS assessed as met while anything stands in its way."""
    if criterion_code != STANDARDS or status != AssessmentStatus.MET:
        return
    problems = standards_problems(session, submission)
    if problems:
        raise DomainError(" ".join(problems), field="status")


def approve(session: Session, actor: audit.Actor, application: Submission) -> None:
    """The application is approved (and signed off): its copy is the provider's copy in force from now on."""
    row = copy_of(session, application)
    if row is None or row.approved_at is not None:
        return
    row.approved_at = utcnow()
    concurrency.flush(session)
    audit.record(session, actor, "advertising.copy_approved", "submission", application.id,
                 after={"approved_at": row.approved_at, "headline": row.headline},
                 provider_id=application.provider_id)


def _latest_approved() -> Select:
    latest = (select(AdvertisingCopy.provider_id, func.max(AdvertisingCopy.approved_at).label("approved_at"))
              .where(AdvertisingCopy.provider_id.in_(bindparam("ids", expanding=True)),
                     AdvertisingCopy.approved_at.is_not(None))
              .group_by(AdvertisingCopy.provider_id).subquery())
    return select(AdvertisingCopy).join(latest, (latest.c.provider_id == AdvertisingCopy.provider_id)
                                        & (latest.c.approved_at == AdvertisingCopy.approved_at))


# Built once: the feed asks for a page's copies on every request.
_IN_FORCE = _latest_approved()


def in_force(session: Session, provider_ids: Iterable[int]) -> dict[int, AdvertisingCopy]:
    """The latest approved copy of each provider, read in one query (the feed asks for a page at a time)."""
    ids = list(provider_ids)
    if not ids:
        return {}
    return {row.provider_id: row for row in session.scalars(_IN_FORCE, {"ids": ids})}


def approved_on(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"
