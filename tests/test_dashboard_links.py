"""Every count on the dashboard is a link to the list of exactly those rows."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from backoffice.admin.list_links import list_url
from backoffice.models import (
    AdvertisingStatus,
    CheckKind,
    Finding,
    FindingSeverity,
    FindingState,
    ListingStatus,
    Role,
    VerificationStatus,
    utcnow,
)
from tests.conftest import login
from tests.review_helpers import provider_member, publish_catalogue, submitted


@pytest.fixture
def world(session, make_account, make_provider):
    now = utcnow()
    publish_catalogue(session)
    verified = dict(verification_status=VerificationStatus.VERIFIED, verified_until=now + timedelta(days=200))
    listed_due = make_provider(listing_status=ListingStatus.LISTED, recheck_due_at=now - timedelta(days=1), **verified)
    make_provider(listing_status=ListingStatus.LISTED, recheck_due_at=now + timedelta(days=9), **verified)
    make_provider(listing_status=ListingStatus.LISTED, recheck_due_at=now + timedelta(days=9),
                  verification_status=VerificationStatus.VERIFIED, verified_until=now + timedelta(days=10),
                  advertising_status=AdvertisingStatus.ACTIVE)
    make_provider(listing_status=ListingStatus.SUSPENDED, recheck_due_at=now - timedelta(days=3))  # not listed
    # Past its verified_until: no longer an active advertiser, whatever the stored status says.
    make_provider(listing_status=ListingStatus.LISTED, advertising_status=AdvertisingStatus.ACTIVE,
                  verification_status=VerificationStatus.VERIFIED, verified_until=now - timedelta(hours=1),
                  recheck_due_at=now + timedelta(days=9))
    for n, (severity, state) in enumerate([(FindingSeverity.CRITICAL, FindingState.OPEN),
                                           (FindingSeverity.CRITICAL, FindingState.ACKNOWLEDGED),
                                           (FindingSeverity.CRITICAL, FindingState.RESOLVED),
                                           (FindingSeverity.WARNING, FindingState.OPEN)]):
        session.add(Finding(provider_id=listed_due.id, check=CheckKind.WEBSITE, subject_key=f"s{n}", severity=severity,
                            state=state, title=f"finding {n}"))
    member = provider_member(session, make_account, listed_due)
    submitted(session, member, listed_due)
    session.commit()
    return make_account(Role.RESEARCHER)


def test_each_dashboard_count_opens_the_list_of_those_rows(client, session, world):
    login(client, world)
    page = client.get("/admin/").get_data(as_text=True)
    links = re.findall(r'<td class="text-right"[^>]*><a href="([^"]+)">([\d,]+)</a>', page)
    assert len(links) >= 14  # states, severities, listing statuses, due, expiring, advertisers
    checked = {}
    for href, shown in links:
        listed = client.get(html.unescape(href))
        assert listed.status_code == 200, href
        total = re.search(r'id="list-total">([\d,]+) ', listed.get_data(as_text=True)).group(1)
        assert total == shown, f"{href}: the dashboard says {shown}, the list holds {total}"
        checked[html.unescape(href)] = int(shown.replace(",", ""))
    # The figures themselves, so the test cannot pass on a page of zeros.
    with client.application.test_request_context():
        assert checked[list_url("providers", "Due for re-check")] == 1
        assert checked[list_url("providers", "Verification ends within 30 days")] == 1
        assert checked[list_url("providers", "Active advertiser")] == 1
        assert checked[list_url("findings", severity="critical", state=["acknowledged", "open"])] == 2
        assert checked[list_url("providers", listing_status="listed")] == 4
        assert checked[list_url("submissions", state="submitted")] == 1


def test_a_link_to_a_filter_the_list_does_not_have_is_an_error_not_an_unfiltered_list(app):
    with app.test_request_context():
        with pytest.raises(LookupError, match="no filter for colour"):
            list_url("providers", colour="blue")
        with pytest.raises(LookupError, match="no filter for Nonsense"):
            list_url("providers", "Nonsense")
