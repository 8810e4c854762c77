"""Staff list and details pages read as a person would write them: no `object at 0x`, no `None`, no raw codes,
no ISO timestamps, for a provider with every field filled; the re-check status tells the truth."""
from __future__ import annotations

import re
from datetime import date, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from flask import url_for
from sqlalchemy import select

from backoffice.admin.base import SecuredModelView
from backoffice.models import (
    Accreditation,
    AdvertisingStatus,
    CheckKind,
    CheckOutcome,
    CheckRun,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    Finding,
    FindingSeverity,
    Licence,
    ListingStatus,
    Location,
    Principal,
    PrincipalRole,
    Role,
    SubmissionKind,
    VerificationStatus,
    utcnow,
)
from backoffice.services import findings, review
from tests.conftest import login
from tests.page_text import readability_problems, visible_text
from tests.review_helpers import in_review, provider_member, publish_catalogue, submitted

FULL_LOCATION = {"street1": "12 Main Street", "street2": "Suite 4", "city": "Charlottesville", "state": "VA",
                 "zip": "22902", "county": "Albemarle", "latitude": 38.03, "longitude": -78.48,
                 "phone": "+1 434-296-1234"}


@pytest.fixture
def filled(session, make_account, make_provider):
    """A provider with every field filled, a request in review, a check run, a closed finding."""
    catalogue = publish_catalogue(session)
    moment = utcnow().replace(microsecond=123456)
    provider = make_provider(
        legal_name="Harbor Recovery Center LLC", public_name="Harbor Recovery", npi="1234567893",
        website="https://harbor.example.org", phone="+1 434-296-1234", email="intake@harbor.example.org",
        levels_of_care=["outpatient", "iop", "detox"], services=["substance_use_treatment", "naloxone"],
        populations=["young_adults", "pregnant_postpartum"], payment_accepted=["private_insurance", "self_pay"],
        listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
        verified_at=moment, verified_until=moment + timedelta(days=365), verified_catalogue_id=catalogue.id,
        advertising_status=AdvertisingStatus.ACTIVE, last_rechecked_at=moment,
        recheck_due_at=moment + timedelta(days=30), import_source="findtreatment", import_key="harbor-1",
    )
    provider.locations[0] = Location(**FULL_LOCATION)
    provider.licences.append(Licence(state="VA", number="LIC-778", licence_type="Outpatient substance use",
                                     issuing_agency="DBHDS", levels_of_care=["outpatient", "iop"],
                                     expires_on=date.today() + timedelta(days=300)))
    provider.accreditations.append(Accreditation(body="CARF", accreditation_id="CARF-55",
                                                 expires_on=date.today() + timedelta(days=200)))
    provider.principals.append(Principal(name="Dr. Ada Byron", role=PrincipalRole.MEDICAL_DIRECTOR,
                                         npi="1245319599", notes="board certified"))
    session.commit()
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    proposed = {"public_name": "Harbor Recovery", "levels_of_care": ["outpatient", "iop"],
                "locations": [FULL_LOCATION], "principals": [{"name": "Dr. Ada Byron", "role": "medical_director",
                                                              "npi": "1245319599"}]}
    submission = in_review(session, researcher, submitted(session, member, provider, SubmissionKind.UPDATE, proposed))
    submission.proposed = {**submission.proposed, "attestation": {
        "no_referral_fees": True, "no_lead_generation": True, "no_patient_brokering": True,
        "signed_by": "Pat Provider", "signed_at": moment.isoformat()}}
    run = CheckRun(provider_id=provider.id, check=CheckKind.LICENCE_EXPIRY, outcome=CheckOutcome.WARN,
                   summary="Licence LIC-778 expires in 300 days", source_version="recorded expiry dates",
                   evidence={"licence_id": 1, "expires_on": "2027-06-30", "checked_at": moment.isoformat(),
                             "notified": True, "check": "licence_expiry", "levels_of_care": ["iop"]},
                   idempotency_key="licence_expiry:harbor", started_at=moment, finished_at=moment,
                   duration_ms=12)
    session.add(run)
    session.flush()
    finding, _ = findings.open_or_update(session, "system:test", provider, CheckKind.WEBSITE, "website:down",
                                         FindingSeverity.WARNING, "Website answers 404",
                                         {"status": 404, "final_url": "https://harbor.example.org/",
                                          "fetched_at": moment.isoformat()}, run.id)
    session.flush()
    findings.resolve(session, researcher, finding, "the site is back")
    session.add(Decision(submission_id=submission.id, outcome=DecisionOutcome.APPROVED, status=DecisionStatus.FINAL,
                         reason_codes=[], provider_note="Welcome", catalogue_id=catalogue.id,
                         decided_by_id=researcher.id, decided_at=moment, verified_until=moment + timedelta(days=365)))
    source = ExclusionSource(list_name="oig_leie", file_name="UPDATED.csv", sha256="a" * 64, row_count=1,
                             imported_by="system:test", imported_at=moment)
    session.add(source)
    session.flush()
    session.add(ExclusionRecord(source_id=source.id, list_name="oig_leie", kind=ExclusionRecordKind.REINSTATEMENT,
                                row_key="b" * 64, business_name="Harbor Clinic", name_key="HARBOR CLINIC", state="VA",
                                excluded_on=date(2019, 3, 1), reinstated_on=date(2024, 3, 1),
                                raw={"BUSNAME": "HARBOR CLINIC", "EXCLDATE": "20190301"}))
    session.commit()
    return {"provider": provider, "submission": submission, "researcher": researcher, "run": run}


def model_views(app) -> list[SecuredModelView]:
    return [v for v in app.extensions["admin"][0]._views if isinstance(v, SecuredModelView)]


def test_every_list_and_details_page_of_every_model_view_reads_as_words(app, session, make_account, filled):
    views = model_views(app)
    assert {v.endpoint for v in views} >= {"providers", "submissions", "criteria", "findings", "check_runs",
                                           "accounts"}
    readers = {role: make_account(role) for role in (Role.AUDITOR, Role.ADMIN)}
    clients = {}
    checked = 0
    problems = {}
    for view in views:
        role = Role.AUDITOR if Role.AUDITOR in view.allowed_roles else next(iter(view.allowed_roles))
        if role not in clients:
            clients[role] = app.test_client()
            login(clients[role], readers.get(role) or make_account(role))
        client = clients[role]
        with app.test_request_context():
            list_url = url_for(f"{view.endpoint}.index_view")
            key = view.model.__mapper__.primary_key[0].key
            ids = [getattr(row, key) for row in session.query(view.model).order_by(key)]
            detail_urls = [url_for(f"{view.endpoint}.details_view", id=i) for i in ids]
        assert ids, view.endpoint
        for url in [list_url, *detail_urls]:
            response = client.get(url)
            assert response.status_code == 200, url
            found = readability_problems(response.get_data(as_text=True))
            if found:
                problems[url] = found
            checked += 1
    assert not problems, "\n".join(f"{url}: {p}" for url, found in problems.items() for p in found)
    assert checked > 20


def details(client, endpoint: str, ident: int) -> dict[str, str]:
    """A details page as {heading: the text under it}."""
    page = client.get(f"/admin/{endpoint}/details/?id={ident}").get_data(as_text=True)
    rows = re.findall(r"<tr>\s*<td>\s*<b>(.*?)</b>\s*</td>\s*<td>(.*?)</td>\s*</tr>", page, re.S)
    return {visible_text(k).strip(): visible_text(v).replace("\n", " | ") for k, v in rows}


def eastern(moment) -> str:
    """A stored UTC moment as a staff member who chose no zone reads it (DISPLAY_TIME_ZONE's default)."""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(ZoneInfo("America/New_York"))
    assert local.tzname() in ("EST", "EDT")
    return f"{local.day} {local:%b %Y}, {local:%H:%M} {local.tzname()}"


def test_the_provider_details_page_names_its_parts_in_words(client, session, make_account, filled):
    login(client, make_account(Role.RESEARCHER))
    shown = details(client, "providers", filled["provider"].id)
    expires = (date.today() + timedelta(days=300))
    assert shown["Licences"] == (f"VA licence LIC-778 (Outpatient substance use), expires {expires.day} "
                                 f"{expires:%b %Y}, issued by DBHDS, covering Outpatient, Intensive outpatient (IOP)")
    assert shown["Principals"] == "Dr. Ada Byron (Medical director), NPI 1245319599"
    assert shown["Accreditations"].startswith("CARF accreditation CARF-55, expires ")
    assert shown["Locations"] == ("12 Main Street, Suite 4, Charlottesville, VA 22902 (Albemarle County), "
                                  "phone +1 434-296-1234")
    assert shown["Services"] == "Substance use treatment | Naloxone distribution"
    assert shown["Populations served"] == "Young adults | Pregnant or postpartum people"
    assert shown["Listing status"] == "listed" and shown["Advertising status"] == "active"
    assert shown["Import source"] == "FindTreatment.gov locator export"
    moment = filled["provider"].verified_at
    assert shown["Verified on"] == eastern(moment)


def test_the_recheck_status_says_what_ran_when_no_window_completed(client, session, make_account, make_provider):
    provider = make_provider(listing_status=ListingStatus.LISTED)
    started = utcnow().replace(microsecond=0) - timedelta(hours=2)
    session.add(CheckRun(provider_id=provider.id, check=CheckKind.WEBSITE, outcome=CheckOutcome.WARN,
                         summary="Website domain does not resolve", idempotency_key="website:1:due-x",
                         started_at=started, finished_at=started))
    session.commit()
    login(client, make_account(Role.RESEARCHER))
    expected = f"never completed; latest check: website, warn, {eastern(started)}"
    assert details(client, "providers", provider.id)["Last re-checked"] == expected
    page = client.get(f"/admin/finding-work/provider/{provider.id}").get_data(as_text=True)
    assert re.search(r'id="last-rechecked">([^<]*)<', page).group(1) == expected

    completed = started + timedelta(hours=1)
    provider.last_rechecked_at = completed
    session.commit()
    page = client.get(f"/admin/finding-work/provider/{provider.id}").get_data(as_text=True)
    assert re.search(r'id="last-rechecked">([^<]*)<', page).group(1) == (
        f"{eastern(completed)} (latest check: website, warn, {eastern(started)})")


def test_the_case_page_and_the_findings_pages_read_as_words(client, session, make_account, filled):
    researcher = filled["researcher"]
    login(client, researcher)
    provider = filled["provider"]
    finding_id = session.scalar(select(Finding.id))
    for url in (f"/admin/review/case/{filled['submission'].id}", f"/admin/review/provider/{provider.id}",
                f"/admin/finding-work/provider/{provider.id}", f"/admin/finding-work/{finding_id}",
                "/admin/finding-work/", "/admin/review/", "/admin/catalogue/"):
        response = client.get(url)
        assert response.status_code == 200, url
        found = readability_problems(response.get_data(as_text=True))
        assert found == [], f"{url}: {found}"
    review.request_info(session, researcher, filled["submission"], "Which licence covers detox?", None)
    session.commit()
    page = client.get(f"/admin/review/case/{filled['submission'].id}").get_data(as_text=True)
    assert readability_problems(page) == []
