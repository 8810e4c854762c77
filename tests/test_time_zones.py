"""Every date a person reads is in their time zone, in one format ("1 Dec 2026, 09:23 EST"): a staff member's
own choice or DISPLAY_TIME_ZONE, a provider's organisation's zone; machine formats stay ISO 8601 UTC."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from flask import g
from flask_login import login_user
from sqlalchemy import event, func, select

import config
from backoffice import formatting, zones
from backoffice.extensions import db
from backoffice.models import AuditEvent, ListingStatus, Role
from backoffice.startup import EXIT_STATUS
from backoffice.vocab import STATE_TIME_ZONES, US_STATES
from tests.page_text import visible_text
from tests.review_helpers import provider_member, publish_catalogue, submitted
from tests.security_helpers import signed_in
from tests.test_startup import BIN, ROOT

WINTER = datetime(2026, 12, 1, 14, 23, 5, tzinfo=timezone.utc)   # 09:23:05 EST, 06:23:05 PST
SUMMER = datetime(2026, 7, 1, 13, 23, tzinfo=timezone.utc)       # 09:23 EDT, 06:23 PDT
LATE = datetime(2026, 12, 2, 3, 30, tzinfo=timezone.utc)         # still 1 December in New York


def events(session, action: str) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


def read_as(app, account=None):
    """A request context in which `account` (or nobody) reads the page. The test's application context is
    shared by every request, so what the last one kept on g (its signed-in user) goes first."""
    for name in list(g):
        g.pop(name, None)
    context = app.test_request_context("/")
    context.push()
    if account is not None:
        login_user(account)
    return context


# -- the filters ---------------------------------------------------------------------------------------------


def test_the_filters_write_one_format_in_the_readers_zone(app, session, make_account):
    western = make_account(Role.RESEARCHER)
    western.time_zone = "America/Los_Angeles"
    eastern = make_account(Role.AUDITOR)
    session.commit()

    context = read_as(app, eastern)
    try:
        assert formatting.when(WINTER) == "1 Dec 2026, 09:23 EST"
        assert formatting.when(WINTER, seconds=True) == "1 Dec 2026, 09:23:05 EST"
        assert formatting.when(SUMMER) == "1 Jul 2026, 09:23 EDT"
        assert formatting.when(WINTER.replace(tzinfo=None)) == "1 Dec 2026, 09:23 EST"  # SQLite's naive UTC
        assert formatting.when("2026-12-01T14:23:05.123456+00:00") == "1 Dec 2026, 09:23 EST"  # a JSON value
        assert formatting.day(LATE) == "1 Dec 2026"
        assert formatting.day(date(2026, 12, 2)) == "2 Dec 2026"  # a day has no zone: never shifted
        assert formatting.when(date(2026, 12, 2)) == "2 Dec 2026"
        assert formatting.when(None) == "" and formatting.day("") == ""
    finally:
        context.pop()

    context = read_as(app, western)
    try:
        assert formatting.when(WINTER) == "1 Dec 2026, 06:23 PST"
        assert formatting.when(WINTER, seconds=True) == "1 Dec 2026, 06:23:05 PST"
        assert formatting.when(SUMMER) == "1 Jul 2026, 06:23 PDT"
        assert formatting.day(LATE) == "1 Dec 2026"
        assert formatting.day(date(2026, 12, 2)) == "2 Dec 2026"
    finally:
        context.pop()

    context = read_as(app)  # signed out
    try:
        assert formatting.when(WINTER) == "1 Dec 2026, 09:23 EST"
    finally:
        context.pop()


def test_the_default_zone_is_the_setting(make_app, make_account):
    app = make_app(DISPLAY_TIME_ZONE="America/Chicago")
    with app.app_context():
        account = make_account(Role.RESEARCHER)
        context = read_as(app, account)
        try:
            assert formatting.when(WINTER) == "1 Dec 2026, 08:23 CST"
            assert formatting.when(SUMMER) == "1 Jul 2026, 08:23 CDT"
        finally:
            context.pop()
        db.session.remove()


def test_the_zone_is_worked_out_once_per_request(app, session, make_account, make_provider):
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    context = read_as(app, member)
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        shown = {formatting.when(WINTER) for _ in range(50)}
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
        context.pop()
    assert shown == {"1 Dec 2026, 09:23 EST"}  # Virginia
    assert len([s for s in statements if "organisation_member" in s or "location" in s]) <= 2, statements


def test_every_state_has_a_zone_of_the_database():
    assert set(STATE_TIME_ZONES) == set(US_STATES)
    assert not [zone for zone in STATE_TIME_ZONES.values() if zones.zone_problem(zone)]
    assert STATE_TIME_ZONES["CA"] == "America/Los_Angeles" and STATE_TIME_ZONES["AZ"] == "America/Phoenix"
    choices = [value for value, _ in zones.zone_choices()]
    assert choices[:5] == ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
                           "America/Los_Angeles"]
    rest = choices[len(zones.US_ZONES):]
    assert rest == sorted(rest) and "Europe/Paris" in rest and len(set(choices)) == len(choices)


# -- staff pages ---------------------------------------------------------------------------------------------


def verified_on(client, provider_id: int) -> str:
    page = client.get(f"/admin/providers/details/?id={provider_id}").get_data(as_text=True)
    rows = re.findall(r"<tr>\s*<td>\s*<b>(.*?)</b>\s*</td>\s*<td>(.*?)</td>\s*</tr>", page, re.S)
    return {visible_text(k).strip(): visible_text(v).strip() for k, v in rows}["Verified on"]


def test_a_staff_member_chooses_a_zone_and_every_page_follows(app, session, make_account, make_provider):
    provider = make_provider(listing_status=ListingStatus.LISTED, verified_at=WINTER)
    researcher = make_account(Role.RESEARCHER)
    browser = signed_in(app, researcher)
    assert verified_on(browser, provider.id) == "1 Dec 2026, 09:23 EST"

    page = browser.get("/admin/time-zone/")
    text = visible_text(page.get_data(as_text=True))
    assert page.status_code == 200 and "Show dates in" in text
    options = re.findall(r'<option[^>]*value="([^"]*)"', page.get_data(as_text=True))
    assert options[:3] == ["", "America/New_York", "America/Chicago"] and "Asia/Tokyo" in options
    assert re.search(r'<label[^>]*for="time_zone"', page.get_data(as_text=True))
    assert 'href="/admin/time-zone/"' in page.get_data(as_text=True)  # in the account menu

    saved = browser.post("/admin/time-zone/", data={"time_zone": "America/Los_Angeles"}, follow_redirects=True)
    assert "Dates are shown in America/Los_Angeles." in visible_text(saved.get_data(as_text=True))
    session.refresh(researcher)
    assert researcher.time_zone == "America/Los_Angeles"
    changed = session.scalars(select(AuditEvent).where(AuditEvent.action == "account.time_zone_changed")).one()
    assert (changed.actor, changed.entity_id) == (f"user:{researcher.id}", str(researcher.id))
    assert (changed.before, changed.after) == ({"time_zone": None}, {"time_zone": "America/Los_Angeles"})
    assert formatting.EVENT_WORDS["account.time_zone_changed"] == "time zone for dates changed"
    assert verified_on(browser, provider.id) == "1 Dec 2026, 06:23 PST"
    provider.verified_at = SUMMER
    session.commit()
    assert verified_on(browser, provider.id) == "1 Jul 2026, 06:23 PDT"
    # Another staff member's pages are not moved by it.
    assert verified_on(signed_in(app, make_account(Role.AUDITOR)), provider.id) == "1 Jul 2026, 09:23 EDT"

    again = browser.post("/admin/time-zone/", data={"time_zone": "America/Los_Angeles"}, follow_redirects=True)
    assert "Nothing changed." in visible_text(again.get_data(as_text=True))
    assert events(session, "account.time_zone_changed") == 1

    back = browser.post("/admin/time-zone/", data={"time_zone": ""}, follow_redirects=True)
    assert "Dates are shown in the default, America/New_York." in visible_text(back.get_data(as_text=True))
    session.refresh(researcher)
    assert researcher.time_zone is None and events(session, "account.time_zone_changed") == 2


@pytest.mark.parametrize("wrong", ["Mars/Olympus_Mons", "EST; DROP TABLE account", "../../etc/passwd", "utc+2"])
def test_a_zone_that_does_not_exist_is_refused_and_changes_nothing(app, session, make_account, wrong):
    researcher = make_account(Role.RESEARCH_LEAD)
    researcher.time_zone = "America/Denver"
    session.commit()
    browser = signed_in(app, researcher)
    before = events(session, "account.time_zone_changed")
    refused = browser.post("/admin/time-zone/", data={"time_zone": wrong})
    text = visible_text(refused.get_data(as_text=True))
    assert refused.status_code == 400
    assert "Your time zone was not changed." in text
    assert "is not a time zone name of the IANA database (write one like America/New_York)" in text
    assert 'id="refusal"' in refused.get_data(as_text=True)
    session.expire_all()
    assert researcher.time_zone == "America/Denver"
    assert events(session, "account.time_zone_changed") == before


def test_providers_cannot_reach_the_staff_zone_page(app, session, make_account, make_provider):
    member = provider_member(session, make_account, make_provider())
    browser = signed_in(app, member)
    assert browser.get("/admin/time-zone/").status_code in (302, 403, 404)
    assert browser.post("/admin/time-zone/", data={"time_zone": "Asia/Tokyo"}).status_code in (302, 403, 404)
    session.refresh(member)
    assert member.time_zone is None


# -- provider pages ------------------------------------------------------------------------------------------


def portal_timeline(browser, submission_id: int) -> str:
    page = browser.get(f"/portal/requests/{submission_id}").get_data(as_text=True)
    return visible_text(page)


def test_a_provider_reads_its_organisations_zone_by_state_then_by_choice(app, session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider()
    provider.locations[0].state = "CA"
    session.commit()
    member = provider_member(session, make_account, provider)
    submission = submitted(session, member, provider)
    browser = signed_in(app, member)
    at = submission.transitions[-1].at

    def local(zone: str) -> str:
        moment = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(ZoneInfo(zone))
        return f"{moment.day} {moment:%b %Y}, {moment:%H:%M} {moment.tzname()}"

    assert f"{local('America/Los_Angeles')} — submitted" in portal_timeline(browser, submission.id)
    assert local("America/Los_Angeles").endswith(("PST", "PDT"))
    organisation = visible_text(browser.get(f"/portal/organisations/{provider.id}").get_data(as_text=True))
    assert "Dates on your organisation's pages are shown in America/Los Angeles." in organisation

    # The organisation's own choice wins over its state; the member sets it on the organisation page.
    saved = browser.post(f"/portal/organisations/{provider.id}/time-zone", data={"time_zone": "America/Chicago"},
                         follow_redirects=True)
    assert "The time zone is saved." in visible_text(saved.get_data(as_text=True))
    assert "shown in America/Chicago." in visible_text(saved.get_data(as_text=True))
    session.refresh(provider)
    assert provider.time_zone == "America/Chicago"
    changed = session.scalars(select(AuditEvent).where(AuditEvent.action == "provider.time_zone_changed")).one()
    assert (changed.actor, changed.provider_id) == (f"user:{member.id}", provider.id)
    assert (changed.before, changed.after) == ({"time_zone": None}, {"time_zone": "America/Chicago"})
    assert f"{local('America/Chicago')} — submitted" in portal_timeline(browser, submission.id)

    # A wrong zone is refused on the page, with the organisation's choice kept.
    refused = browser.post(f"/portal/organisations/{provider.id}/time-zone", data={"time_zone": "Moon/Base"})
    assert refused.status_code == 400
    assert "'Moon/Base' is not a time zone name of the IANA database" in visible_text(refused.get_data(as_text=True))
    session.expire_all()
    assert provider.time_zone == "America/Chicago" and events(session, "provider.time_zone_changed") == 1

    # Staff read the same request in their own zone, not the organisation's.
    staff = signed_in(app, make_account(Role.RESEARCHER))
    case = visible_text(staff.get(f"/admin/review/case/{submission.id}").get_data(as_text=True))
    assert local("America/New_York") in case and local("America/Chicago") not in case


def test_another_organisations_member_cannot_set_its_zone(app, session, make_account, make_provider):
    provider, other = make_provider(), make_provider()
    outsider = signed_in(app, provider_member(session, make_account, other))
    assert outsider.post(f"/portal/organisations/{provider.id}/time-zone",
                         data={"time_zone": "Asia/Tokyo"}).status_code == 404
    session.refresh(provider)
    assert provider.time_zone is None and events(session, "provider.time_zone_changed") == 0


def test_an_organisation_without_a_known_state_reads_the_default(app, session, make_account, make_provider):
    provider = make_provider()
    provider.locations[0].state = "ZZ"
    session.commit()
    browser = signed_in(app, provider_member(session, make_account, provider))
    page = visible_text(browser.get(f"/portal/organisations/{provider.id}").get_data(as_text=True))
    assert "shown in America/New York." in page


# -- start-up and machine formats ----------------------------------------------------------------------------


def test_an_unknown_display_time_zone_refuses_to_start(monkeypatch, tmp_path):
    with pytest.raises(config.SettingsError) as refused:
        config.load("testing", {"DISPLAY_TIME_ZONE": "Eastern"})
    assert str(refused.value) == ("Settings refused: DISPLAY_TIME_ZONE 'Eastern' is not a time zone of the IANA "
                                  "database: name one like America/New_York or America/Los_Angeles.")
    assert config.load("testing", {"DISPLAY_TIME_ZONE": "Pacific/Honolulu"})["DISPLAY_TIME_ZONE"] == "Pacific/Honolulu"

    env = {key: value for key, value in os.environ.items() if key not in ("FLASK_APP", "BACKOFFICE_ENV")}
    env.update(DISPLAY_TIME_ZONE="America/Gotham", DATABASE_URL=f"sqlite:///{tmp_path}/backoffice.db",
               BACKOFFICE_INSTANCE_PATH=str(tmp_path / "instance"), PYTHONUNBUFFERED="1")
    result = subprocess.run([str(BIN / "flask"), "--app", "backoffice", "routes"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_STATUS, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "Settings refused: DISPLAY_TIME_ZONE 'America/Gotham' is not a time zone of the IANA database" in result.stderr


ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00:00$")


def test_exports_keep_iso_utc_whatever_the_readers_zone(app, session, make_account):
    auditor = make_account(Role.AUDITOR)
    auditor.time_zone = "Asia/Tokyo"
    session.commit()
    browser = signed_in(app, auditor)
    jsonl = browser.post("/admin/audit/export", data={"format": "jsonl"}).get_data(as_text=True)
    moments = [json.loads(line)["occurred_at"] for line in jsonl.splitlines() if '"record":"event"' in line]
    assert moments and all(ISO_UTC.match(m) for m in moments), moments[:3]
    rows = list(csv.DictReader(io.StringIO(browser.post("/admin/audit/export", data={"format": "csv"})
                                           .get_data(as_text=True))))
    assert rows and all(ISO_UTC.match(json.loads(r["occurred_at"])) for r in rows if r.get("occurred_at"))
    # The page beside it shows the same moments in Tokyo time.
    log = visible_text(browser.get("/admin/audit/?action=account.created").get_data(as_text=True))
    assert " JST" in log and " UTC" not in log.replace("UTC date", "")
