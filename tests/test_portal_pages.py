"""What a provider reads on the portal's pages: every value of its listing, shown as text in words."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select

from backoffice.models import ListingStatus, Provider, Submission
from tests.portal_helpers import (
    OTHER_VALID_NPI,
    VALID_NPI,
    definitions,
    in_a_year,
    listed_and_verified,
    section_text,
)
from tests.test_demo import seed, sign_in


# The listing submit_data() fills in, as the pages must show it (codes in words, the phone as normalised).
def as_read(iso_day: str) -> str:
    """A day as the pages write it: '1 Dec 2027'."""
    day = date.fromisoformat(iso_day)
    return f"{day.day} {day:%b %Y}"


SHOWN = {
    "Legal name": "Harbor Recovery Center LLC",
    "Public name": "Harbor Recovery Center",
    "NPI": VALID_NPI,
    "Website": "https://harbor.example.org",
    "Phone": "+1 434-296-1234",
    "E-mail": "admissions@harbor.example.org",
    "Levels of care": "Outpatient; Intensive outpatient (IOP)",
    "Services": "Substance use treatment; Naloxone distribution; Medications for opioid use disorder (MOUD)",
    "Populations served": "Adults",
    "Payment accepted": "Medicaid; Cash or self-payment",
    "Locations": "1 Main Street, Charlottesville, VA 22902",
    "Licences": f"VA Outpatient SUD no. L-123, covers Outpatient, Intensive outpatient (IOP); expires {as_read(in_a_year())}",
    "Accreditations": f"CARF (C-9); expires {as_read(in_a_year())}",
    "Principals": f"Dr. Ada Byron, Medical director (NPI {OTHER_VALID_NPI})",
}


def test_a_listed_provider_reads_every_field_of_its_listing_as_the_directory_has_it(client, session, make_account):
    account, provider = listed_and_verified(session, make_account, client)
    assert provider.listing_status == ListingStatus.LISTED

    page = client.get(f"/portal/organisations/{provider.id}").get_data(as_text=True)
    assert definitions(page, "directory-listing") == SHOWN
    assert "—" not in section_text(page, "directory-listing")

    # The request it was listed from shows the same values under "What you asked to list".
    request_id = session.scalar(select(Submission.id).where(Submission.provider_id == provider.id))
    request_page = client.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert definitions(request_page, "proposed-listing") == SHOWN


def test_the_demo_provider_reads_its_listed_organisation(app, client, session):
    seed(app)
    sign_in(client, app, "provider@demo.example")
    listed = session.scalars(select(Provider).where(Provider.listing_status == ListingStatus.LISTED)
                             .join(Provider.members).order_by(Provider.id)).first()
    assert listed is not None, "the demo provider acts for a listed organisation"
    page = client.get(f"/portal/organisations/{listed.id}").get_data(as_text=True)
    shown = definitions(page, "directory-listing")
    assert shown["Legal name"] == listed.legal_name
    assert shown["Website"] == listed.website
    first = listed.locations[0]
    assert f"{first.street1}" in shown["Locations"] and f"{first.city}, {first.state} {first.zip}" in shown["Locations"]
    assert shown["Levels of care"] and shown["Levels of care"] != "—"
