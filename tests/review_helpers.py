"""Builders for review tests: a published catalogue and a submission taken to a given point."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from backoffice.models import AssessmentStatus, Role, SubmissionKind
from backoffice.services import accounts, advertising_copy, criteria, review, submissions
from backoffice.services.advertising_copy import Copy, website_host
from backoffice.services.review import Evidence, ReviewPolicy

CATALOGUE = Path(__file__).resolve().parent.parent / "data" / "criteria" / "catalogue-v1.json"
POLICY = ReviewPolicy()


def publish_catalogue(session):
    catalogue = criteria.publish(session, "system:test", criteria.load_definition(CATALOGUE))
    session.commit()
    return catalogue


def provider_member(session, make_account, provider):
    account = make_account(Role.PROVIDER)
    accounts.add_member(session, "system:test", account, provider)
    session.commit()
    return account


def submitted(session, provider_account, provider, kind=SubmissionKind.NEW_LISTING, proposed=None):
    """A submitted request; an advertiser application carries its copy, as every application does."""
    submission = submissions.create_draft(session, provider_account, provider, kind,
                                          proposed if proposed is not None else {"public_name": provider.public_name})
    if kind == SubmissionKind.ADVERTISER_APPLICATION:
        advertising_copy.attach(session, provider_account, submission, ad_copy(provider))
    review.submit(session, provider_account, submission, POLICY)
    session.commit()
    return submission


def in_review(session, researcher, submission):
    review.claim(session, researcher, submission, None)
    session.commit()
    return submission


def assess_all(session, researcher, submission, status=AssessmentStatus.MET, except_codes=()):
    for criterion in review.applicable_criteria(session, submission):
        if criterion.code in except_codes:
            continue
        review.record_assessment(session, researcher, submission, criterion.code, status,
                                 Evidence(note=f"checked {criterion.code}", source="test"), None)
    session.commit()


def ad_copy(provider, **changes) -> Copy:
    """Advertising copy an advertiser application can carry: its landing page on the provider's own website."""
    values = {"headline": "Recovery close to home", "text": "Residential and outpatient treatment; call admissions.",
              "claims": ("Accredited by CARF since 2019", "Admissions open 24 hours"),
              "landing_url": f"https://{website_host(provider.website)}/admissions"}
    return Copy(**{**values, **changes})


def ad_form(provider, **changes) -> dict:
    """The portal's application form filled with `ad_copy`, claims one per line."""
    copy = ad_copy(provider)
    return {"headline": copy.headline, "text": copy.text, "claims": "\n".join(copy.claims),
            "landing_url": copy.landing_url, **changes}


class _FormReader(HTMLParser):
    """What a browser would post from one form of a page: text and hidden inputs, ticked boxes and radios, the
    selected option of each select (else its first), the text of each textarea."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside, self.values = form_id, False, {}
        self._select = self._textarea = None
        self._first_option = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.values.setdefault(name, []).append(a.get("value", "y"))
            else:
                self.values[name] = a.get("value") or ""
        elif tag == "select":
            self._select, self._first_option = name, None
        elif tag == "option" and self._select:
            value = a.get("value") or ""
            if self._first_option is None:
                self._first_option = value
                self.values.setdefault(self._select, value)
            if "selected" in a:
                self.values[self._select] = value
        elif tag == "textarea":
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            text = self.values[self._textarea] + data
            # A browser drops the newline that opens a textarea's text.
            self.values[self._textarea] = text[2:] if text.startswith("\r\n") else text


def form_data(page: str, form_id: str) -> dict:
    """The fields of the form with this id as a browser would post them, to change and post back."""
    reader = _FormReader(form_id)
    reader.feed(page)
    assert reader.values, f"no form {form_id} on the page"
    return {name: (value[0] if isinstance(value, list) and len(value) == 1 else value)
            for name, value in reader.values.items()}


def assessment_post(page: str, changes: dict[str, dict]) -> dict:
    """The case page's assessment form as shown, with these criteria's fields changed (by code, then field)."""
    data = form_data(page, "assess-form")
    for code, fields in changes.items():
        for name, value in fields.items():
            key = f"assess-{code}-{name}"
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
    return data
