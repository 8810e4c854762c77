"""The moment verified_until passes, the provider is no longer verified nor an active advertiser anywhere it is
read, before the hourly sweep has recorded it: the dashboard's counts, the feed, the receipt, the staff and
provider pages, the advertiser rules. The sweep then catches up the stored statuses and nothing changes again."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backoffice.models import AdvertisingStatus, ListingStatus, Provider, Role, VerificationStatus, utcnow
from backoffice.services import dashboard
from tasks.sweeps import verification_expiry_sweep
from tests.conftest import login
from tests.page_text import visible_text
from tests.review_helpers import provider_member


@pytest.fixture
def advertisers(session, make_provider):
    now = utcnow()

    def advertiser(name, verified_until):
        return make_provider(public_name=name, listing_status=ListingStatus.LISTED,
                             verification_status=VerificationStatus.VERIFIED, verified_at=now - timedelta(days=365),
                             verified_until=verified_until, advertising_status=AdvertisingStatus.ACTIVE)

    return {"current": advertiser("Current Advertiser", now + timedelta(days=100)),
            "lapsed": advertiser("Lapsed Advertiser", now - timedelta(minutes=10))}


def _dashboard_figure(page: str, label: str) -> int:
    return int(re.search(rf"{label}\s+(\d+)", visible_text(page)).group(1))


def test_a_lapsed_advertiser_is_not_counted_listed_or_marked_before_the_sweep(app, client, session, advertisers,
                                                                              make_account):
    lapsed, current = advertisers["lapsed"], advertisers["current"]
    assert lapsed.verification_status == VerificationStatus.VERIFIED  # the sweep has not run
    assert lapsed.advertising_status == AdvertisingStatus.ACTIVE

    # The one definition, in Python and in SQL.
    now = utcnow()
    assert not lapsed.is_verified(now) and not lapsed.is_active_advertiser(now) and not lapsed.is_in_directory(now)
    assert current.is_verified(now) and current.is_active_advertiser(now) and current.is_in_directory(now)
    assert session.scalars(select(Provider.id).where(Provider.is_active_advertiser(now))).all() == [current.id]
    figures = dashboard.figures(session, now)
    assert figures.active_advertisers == 1 and figures.verification_expiring_30d == 0

    # The feed and the receipt.
    feed = client.get("/api/v1/listings").get_json()
    assert [(item["id"], item["advertiser"]) for item in feed["listings"]] == [(current.id, True)]
    assert client.get(f"/api/v1/listings/{lapsed.id}/verification").status_code == 404

    # The staff pages: the dashboard's count, the provider list, the provider's own page.
    login(client, make_account(Role.RESEARCHER))
    assert _dashboard_figure(client.get("/admin/").get_data(as_text=True), "active advertisers") == 1
    listing = visible_text(client.get("/admin/providers/").get_data(as_text=True))
    row = listing[listing.index("Lapsed Advertiser"):listing.index("Current Advertiser")]
    assert "expired" in row and "suspended" in row and "active" not in row
    page = client.get(f"/admin/review/provider/{lapsed.id}").get_data(as_text=True)
    assert re.search(r'id="verification">\s*expired on \d+ \w+ \d{4}', page) and re.search(r'id="advertising-status">\s*suspended', page)

    # The provider's own page does not invite a lapsed provider to advertise.
    member, client = provider_member(session, make_account, lapsed), app.test_client()
    login(client, member)
    organisation = client.get(f"/portal/organisations/{lapsed.id}").get_data(as_text=True)
    assert "Your verification has lapsed" in visible_text(organisation)
    assert re.search(r'id="verification-status">\s*expired on \d+ \w+ \d{4}', organisation)


def test_the_sweep_catches_up_the_stored_statuses_and_the_figures_do_not_move(client, session, advertisers):
    now = utcnow()
    before = dashboard.figures(session, now)
    feed_before = client.get("/api/v1/listings").get_json()
    assert verification_expiry_sweep() == 1
    session.expire_all()
    lapsed = session.get(Provider, advertisers["lapsed"].id)
    assert (lapsed.verification_status, lapsed.advertising_status) == (VerificationStatus.EXPIRED,
                                                                      AdvertisingStatus.SUSPENDED)
    after = dashboard.figures(session, now)
    assert (after.active_advertisers, after.verification_expiring_30d) == (before.active_advertisers,
                                                                           before.verification_expiring_30d) == (1, 0)
    assert client.get("/api/v1/listings").get_json() == feed_before
    assert session.scalar(select(func.count()).select_from(Provider).where(
        Provider.advertising_status == AdvertisingStatus.ACTIVE)) == 1
