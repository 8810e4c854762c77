"""Builders for portal tests: complete listing form data, provider accounts with a draft, files, mailed links."""
from __future__ import annotations

import re
from datetime import date, timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

from sqlalchemy import select

from backoffice.models import DecisionOutcome, Notification, Provider, Role, Submission
from backoffice.services import listing_requests, review
from tests.conftest import login
from tests.review_helpers import POLICY, assess_all, in_review, publish_catalogue

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 64
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64
VALID_NPI = "1234567893"
OTHER_VALID_NPI = "1245319599"


def in_a_year() -> str:
    return (date.today() + timedelta(days=365)).isoformat()


def listing_data(**overrides) -> dict:
    """A complete, valid listing form post that saves a draft."""
    data = {
        "legal_name": "Harbor Recovery Center LLC", "public_name": "Harbor Recovery Center",
        "npi": VALID_NPI, "website": "https://harbor.example.org", "phone": "(434) 296-1234",
        "email": "admissions@harbor.example.org",
        "levels_of_care": ["outpatient", "iop"], "services": ["substance_use_treatment"],
        "harm_reduction": ["naloxone", "moud"], "populations": ["adults"], "payment_accepted": ["medicaid", "self_pay"],
        "locations-0-street1": "1 Main Street", "locations-0-city": "Charlottesville",
        "locations-0-state": "VA", "locations-0-zip": "22902",
        "licences-0-state": "VA", "licences-0-number": "L-123", "licences-0-licence_type": "Outpatient SUD",
        "licences-0-levels_of_care": ["outpatient", "iop"], "licences-0-expires_on": in_a_year(),
        "accreditations-0-body": "CARF", "accreditations-0-accreditation_id": "C-9", "accreditations-0-expires_on": in_a_year(),
        "principals-0-name": "Dr. Ada Byron", "principals-0-role": "medical_director", "principals-0-npi": OTHER_VALID_NPI,
        "save": "Save draft",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def submit_data(**overrides) -> dict:
    """A complete listing form post that submits, with the attestation signed."""
    signed = {"save": None, "submit_request": "Submit for review", "no_referral_fees": "y",
              "no_lead_generation": "y", "no_patient_brokering": "y", "signed_by": "Ada Byron"}
    return listing_data(**{**signed, **overrides})


def provider_with_draft(session, make_account, client=None, legal_name="Harbor Recovery Center LLC",
                        public_name="Harbor Recovery Center"):
    """A provider account acting for a new organisation with a draft listing request; signs in `client`."""
    account = make_account(Role.PROVIDER)
    draft = listing_requests.create_organisation(session, account, legal_name, public_name)
    session.commit()
    if client is not None:
        assert login(client, account).status_code == 302
    return account, draft.provider, draft


def listed_and_verified(session, make_account, client, **form):
    """A provider account whose organisation was listed through the portal (every field filled unless `form`
    overrides some) and approved by a researcher; signs in `client`. Returns the account and the provider."""
    publish_catalogue(session)
    account, provider, draft = provider_with_draft(session, make_account, client)
    submitted = client.post(f"/portal/requests/{draft.id}/edit", data=submit_data(**form))
    assert submitted.status_code == 302, submitted.get_data(as_text=True)
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, reload(session, draft))
    assess_all(session, researcher, submission)
    review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    session.expire_all()
    return account, session.get(Provider, provider.id)


def latest_mail(session, email: str, kind: str) -> Notification:
    session.expire_all()
    note = session.scalar(select(Notification).where(Notification.recipient_email == email, Notification.kind == kind)
                          .order_by(Notification.id.desc()).limit(1))
    assert note is not None, f"no {kind} mail to {email}"
    return note


def mailed_path(session, email: str, kind: str) -> str:
    """The path of the link in the latest mail of that kind, as the recipient would open it."""
    body = latest_mail(session, email, kind).body
    url = re.search(r"https?://\S+", body).group(0)
    return urlsplit(url).path


def reload(session, submission: Submission) -> Submission:
    session.expire_all()
    return session.get(Submission, submission.id)


VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
# Elements that flow within a line: a browser puts no space around them.
INLINE_ELEMENTS = frozenset({"a", "abbr", "b", "code", "em", "i", "kbd", "label", "mark", "q", "s", "small", "span",
                             "strong", "sub", "sup", "time", "u"})


class _Section(HTMLParser):
    """Collects the text inside the element with one id, and each <dt> with its <dd>, as a browser shows them."""

    def __init__(self, element_id: str):
        super().__init__(convert_charrefs=True)
        self.element_id, self.depth, self.found = element_id, 0, False
        self.chunks: list[str] = []
        self.terms: list[list[str]] = []  # [term, shown beside it]
        self._in: str | None = None

    def _emit(self, text: str) -> None:
        self.chunks.append(text)
        if self._in and self.terms:
            self.terms[-1][0 if self._in == "dt" else 1] += text

    def handle_starttag(self, tag, attrs):
        if self.depth == 0:
            if not self.found and dict(attrs).get("id") == self.element_id:
                self.found, self.depth = True, 1
            return
        if tag in ("dt", "dd"):
            if tag == "dt":
                self.terms.append(["", ""])
            self._in = tag
        if tag not in VOID_ELEMENTS:
            self.depth += 1
        if tag not in INLINE_ELEMENTS:
            self._emit(" ")

    def handle_endtag(self, tag):
        if self.depth and tag not in VOID_ELEMENTS:
            self.depth -= 1
            if tag not in INLINE_ELEMENTS:
                self._emit(" ")
            if tag in ("dt", "dd"):
                self._in = None

    def handle_data(self, data):
        if self.depth:
            self._emit(data)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _parse(page: str, element_id: str) -> _Section:
    parser = _Section(element_id)
    parser.feed(page)
    assert parser.found, f"the page has no element with id {element_id!r}"
    return parser


def section_text(page: str, element_id: str) -> str:
    """The text a person reads inside the element with that id, whitespace collapsed."""
    return _collapse("".join(_parse(page, element_id).chunks))


def definitions(page: str, element_id: str) -> dict[str, str]:
    """Each term of the definition lists inside the element with that id, and the text shown beside it."""
    return {_collapse(term): _collapse(shown) for term, shown in _parse(page, element_id).terms}
