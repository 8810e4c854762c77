"""provider_code keeps a provider's coded lists one row a code, so the feed filters from an index: it follows
the lists through every flush, and the migration fills it from the lists already stored."""
from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from backoffice.extensions import db
from backoffice.models import ListingStatus, ProviderCode, VerificationStatus, utcnow
from backoffice.services import profile


def codes(session, provider_id: int) -> set[tuple[str, str]]:
    session.expire_all()
    return set(session.execute(select(ProviderCode.kind, ProviderCode.code)
                               .where(ProviderCode.provider_id == provider_id)).all())


def test_a_new_provider_has_a_row_for_each_code_of_each_list(session, make_provider):
    provider = make_provider(levels_of_care=["otp", "outpatient"], services=["moud", "naloxone", "naloxone"],
                             populations=["veterans"], payment_accepted=["medicaid"])
    assert codes(session, provider.id) == {
        ("level_of_care", "otp"), ("level_of_care", "outpatient"), ("service", "moud"), ("service", "naloxone"),
        ("population", "veterans"), ("payment", "medicaid")}


def test_the_rows_follow_the_lists_when_they_change(session, make_provider):
    provider = make_provider(services=["moud", "naloxone"])
    other = make_provider(services=["naloxone"])
    provider.services = ["fentanyl_test_strips"]
    provider.levels_of_care = []
    session.commit()
    assert codes(session, provider.id) == {("service", "fentanyl_test_strips")}
    assert codes(session, other.id) == {("level_of_care", "outpatient"), ("service", "naloxone")}


def test_a_flush_that_leaves_the_lists_alone_leaves_the_rows_alone(session, make_provider):
    provider = make_provider(services=["naloxone"])
    session.execute(text("DELETE FROM provider_code WHERE provider_id = :id AND kind = 'level_of_care'"),
                    {"id": provider.id})
    session.commit()
    provider.phone = "434-555-0100"
    session.commit()
    assert codes(session, provider.id) == {("service", "naloxone")}  # not rewritten: nothing it copies changed


def test_an_approved_profile_rewrites_the_rows(session, make_provider, make_account):
    provider = make_provider(services=["moud"])
    proposed = profile.current(provider) | {"services": ["naloxone", "syringe_services"]}
    profile.apply(session, "system:test", provider, proposed, "request #1 approved")
    session.commit()
    assert codes(session, provider.id) == {("level_of_care", "outpatient"), ("service", "naloxone"),
                                           ("service", "syringe_services")}


def test_the_feed_filter_follows_a_changed_list(client, session, make_provider):
    now = utcnow()
    provider = make_provider(services=["naloxone"], listing_status=ListingStatus.LISTED,
                             verification_status=VerificationStatus.VERIFIED, verified_at=now,
                             verified_until=now.replace(year=now.year + 1))
    listed_ids = lambda: [item["id"] for item in  # noqa: E731
                          client.get("/api/v1/listings?service=naloxone").get_json()["listings"]]
    assert listed_ids() == [provider.id]
    provider.services = ["moud"]
    session.commit()
    assert listed_ids() == []


def test_the_migration_fills_the_rows_from_the_lists_already_stored(app):
    db.session.remove()
    downgrade(revision="7b3e5f1a9c20")
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO provider (id, legal_name, public_name, levels_of_care, services, populations, "
            "payment_accepted, listing_status, verification_status, advertising_status, created_at, updated_at, "
            "row_version) VALUES (41, 'Old LLC', 'Old', '[\"otp\"]', '[\"naloxone\", \"moud\"]', '[]', '[]', "
            "'listed', 'verified', 'none', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"))
    upgrade()
    with db.engine.connect() as conn:
        rows = set(conn.execute(text("SELECT kind, code FROM provider_code WHERE provider_id = 41")).all())
    assert rows == {("level_of_care", "otp"), ("service", "naloxone"), ("service", "moud")}
