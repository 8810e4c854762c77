"""The staff second factor: set-up through the pages, codes accepted once, recovery codes, limits and resets."""
import hashlib
import re
import threading
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backoffice.auth.views import PENDING
from backoffice.extensions import db
from backoffice.models import Account, RecoveryCode, Role
from backoffice.services import mfa
from backoffice.services.errors import Conflict
from tests.conftest import PASSWORD, fresh_code
from tests.portal_helpers import latest_mail
from tests.security_helpers import (
    TOO_MANY,
    audit_events,
    new_client,
    page_text,
    shown_recovery_codes,
    signed_in,
    wrong_code,
)

RETRY_MESSAGE = "That code is not right, or it was used already."
RESTART_MESSAGE = "Sign in again: the sign-in took too long or was not started."


def _password(client, account):
    return client.post("/login", data={"email": account.email, "password": PASSWORD})


def _recovery_hashes(session, account) -> list[str]:
    session.expire_all()
    return sorted(session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.account_id == account.id)))


def _sha256(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").encode()).hexdigest()


def _at_step(step: int) -> datetime:
    """A moment in the middle of a time step."""
    return datetime.fromtimestamp(step * mfa.STEP_SECONDS + mfa.STEP_SECONDS // 2, timezone.utc)


# -- enrolment ------------------------------------------------------------------------------------


def test_first_sign_in_sets_up_the_authenticator_before_any_staff_page(client, session, make_account):
    account = make_account(Role.RESEARCHER, second_factor=False)
    response = _password(client, account)
    assert response.status_code == 302 and response.headers["Location"] == "/login/enrol"

    page = page_text(client.get("/login/enrol"))
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]{16,})</code>', page).group(1)
    uri = re.search(r'<code id="totp-uri">([^<]+)</code>', page).group(1)
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == f"/{mfa.ISSUER}:{account.email}"
    assert query["secret"] == [secret] and query["issuer"] == [mfa.ISSUER]
    qr = re.search(r'<div class="qr-code my-2" id="qr-code">\s*(<svg.*?</svg>)', page, re.S).group(1)
    assert qr == mfa.qr_svg(uri)  # the picture encodes this very address
    assert "<img" not in page.split('id="qr-code"')[1].split("</div>")[0]  # inline, nothing fetched elsewhere
    assert secret in page_text(client.get("/login/enrol"))  # a reload keeps the same key

    wrong = client.post("/login/enrol", data={"code": wrong_code(secret)})
    assert wrong.status_code == 400 and "That code is not right." in page_text(wrong)
    session.refresh(account)
    assert account.totp_enabled_at is None and account.totp_secret is None
    assert _recovery_hashes(session, account) == []
    assert client.get("/admin/").status_code == 302

    # The code an authenticator app makes from the address on the page turns the factor on.
    done = client.post("/login/enrol", data={"code": pyotp.parse_uri(uri).now()})
    assert done.status_code == 200
    codes = shown_recovery_codes(done)
    assert len(codes) == mfa.RECOVERY_CODE_COUNT == 10 and len(set(codes)) == 10
    stored = _recovery_hashes(session, account)
    assert stored == sorted(_sha256(code) for code in codes)
    assert not {code.replace("-", "") for code in codes} & set(stored) and not set(codes) & set(stored)
    session.refresh(account)
    assert account.totp_secret == secret and account.totp_enabled_at is not None
    [enrolled] = audit_events(session, "account.second_factor_enrolled", account.id)
    assert enrolled.actor == f"user:{account.id}"

    assert client.get("/admin/").status_code == 200
    security = page_text(client.get("/account/security"))
    assert re.search(r'id="recovery-remaining">10<', security)
    assert not any(code in security for code in codes)  # shown once, never again
    again = client.get("/login/enrol")
    assert again.status_code == 302 and secret not in page_text(again)


def test_the_code_given_at_set_up_cannot_be_used_again_to_sign_in(app, session, make_account):
    account = make_account(Role.AUDITOR, second_factor=False)
    browser = new_client(app)
    _password(browser, account)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page_text(browser.get("/login/enrol"))).group(1)
    code = mfa.code_at_step(secret, mfa.current_step())
    assert browser.post("/login/enrol", data={"code": code}).status_code == 200

    other = new_client(app)
    assert _password(other, account).headers["Location"] == "/login/code"
    replay = other.post("/login/code", data={"code": code})
    assert replay.status_code == 400 and RETRY_MESSAGE in page_text(replay)
    assert other.get("/admin/").status_code == 302


def test_two_windows_setting_up_at_once_keep_the_first_set_up(app, session, make_account):
    """Two tabs on the set-up page: the second to finish must not replace the key the first one's app holds."""
    account = make_account(Role.RESEARCHER, second_factor=False)
    first_secret, second_secret = mfa.new_secret(), mfa.new_secret()
    step = mfa.current_step()
    with Session(db.engine) as other:
        stale = other.get(Account, account.id)  # loaded before either finished, as the second tab's request was
        assert not stale.has_second_factor
        mfa.enrol(session, account, first_secret, mfa.code_at_step(first_secret, step))
        session.commit()
        with pytest.raises(Conflict, match="set up for this account a moment ago"):
            mfa.enrol(other, stale, second_secret, mfa.code_at_step(second_secret, step))
        other.rollback()
    session.expire_all()
    assert account.totp_secret == first_secret
    assert len(audit_events(session, "account.second_factor_enrolled", account.id)) == 1


@pytest.mark.parametrize("typed", ["\u0661\u0662\u0663\u0664\u0665\u0666", "\uff11\uff12\uff13\uff14\uff15\uff16",
                                   "12345\u00b2", "\x00\x00\x00\x00\x00\x00", "1" * 5000],
                         ids=["arabic-indic", "fullwidth", "superscript", "nul", "long"])
def test_codes_in_other_digits_or_odd_characters_are_refused_with_the_usual_message(app, session, make_account,
                                                                                      typed):
    account = make_account(Role.RESEARCHER)
    browser = new_client(app)
    _password(browser, account)
    refused = browser.post("/login/code", data={"code": typed})
    assert refused.status_code == 400
    expected = "Field cannot be longer than 40 characters." if len(typed) > 40 else RETRY_MESSAGE
    assert expected in page_text(refused)
    assert browser.get("/admin/").status_code == 302

    fresh = make_account(Role.AUDITOR, second_factor=False)
    enrolling = new_client(app)
    _password(enrolling, fresh)
    refused = enrolling.post("/login/enrol", data={"code": typed})
    assert refused.status_code == 400
    session.refresh(fresh)
    assert not fresh.has_second_factor


def test_the_right_code_written_in_fullwidth_digits_is_not_a_code(session, make_account):
    account = make_account(Role.RESEARCHER)
    code = fresh_code(account)
    fullwidth = "".join(chr(ord(ch) - ord("0") + 0xFF10) for ch in code)
    assert fullwidth.isdigit() and int(fullwidth) == int(code)  # what str.isdigit() and int() would let through
    assert mfa.verify(session, account, fullwidth) is False
    assert mfa.verify(session, account, code) is True


@pytest.mark.parametrize("has_factor", [True, False], ids=["code", "enrol"])
def test_no_staff_page_opens_between_password_and_code(client, make_account, has_factor):
    account = make_account(Role.ADMIN, second_factor=has_factor)
    step = "/login/code" if has_factor else "/login/enrol"
    assert _password(client, account).headers["Location"] == step
    for url in ("/admin/", "/admin/staff/", "/admin/providers/", "/admin/audit/", "/account/security", "/portal/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login?next="), url
    assert client.get(step).status_code == 200  # the half-finished sign-in is still there to finish


# -- a code is accepted once ------------------------------------------------------------------------


def test_a_code_is_accepted_once(app, session, make_account):
    account = make_account(Role.RESEARCHER)
    code = fresh_code(account)
    first = new_client(app)
    _password(first, account)
    assert first.post("/login/code", data={"code": code}).status_code == 302
    assert first.get("/admin/").status_code == 200

    second = new_client(app)
    assert _password(second, account).headers["Location"] == "/login/code"
    replay = second.post("/login/code", data={"code": code})
    assert replay.status_code == 400 and RETRY_MESSAGE in page_text(replay)
    assert second.get("/admin/").status_code == 302
    assert [e.reason for e in audit_events(session, "account.second_factor_failed", account.id)] == ["reused"]
    assert second.post("/login/code", data={"code": fresh_code(account)}).status_code == 302


def test_two_connections_racing_with_one_code_let_exactly_one_in(app, session, make_account):
    account = make_account(Role.RESEARCHER)
    account_id, secret = account.id, account.totp_secret
    session.commit()
    engine = db.engine
    first_step = mfa.current_step()
    rounds = 6

    for n in range(rounds):
        step = first_step + n
        code, at = mfa.code_at_step(secret, step), _at_step(step)
        barrier = threading.Barrier(2)
        outcomes, errors = [], []

        def attempt():
            try:
                with app.app_context(), Session(engine) as own:  # each racer is a request of its own
                    racer = own.get(Account, account_id)
                    barrier.wait(timeout=10)  # noqa: B023 - the threads are joined in this round
                    outcomes.append(mfa.verify(own, racer, code, at=at))  # noqa: B023 - the threads are joined in this round
                    own.commit()
            except Exception as exc:  # surfaced below: a crash must not pass for a refusal
                errors.append(exc)  # noqa: B023 - the threads are joined in this round

        threads = [threading.Thread(target=attempt) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == [] and sorted(outcomes) == [False, True], f"round {n}: {outcomes} {errors}"

    session.expire_all()
    assert session.get(Account, account_id).totp_last_step == first_step + rounds - 1
    assert len(audit_events(session, "account.second_factor_passed", account_id)) == rounds
    assert [e.reason for e in audit_events(session, "account.second_factor_failed", account_id)] == ["reused"] * rounds


def test_codes_one_step_either_side_are_accepted_and_two_steps_away_are_not(session, make_account):
    account = make_account(Role.RESEARCHER)
    at = _at_step(mfa.current_step())
    now = mfa.current_step(at)

    def accepted(offset: int) -> bool:
        return mfa.verify(session, account, mfa.code_at_step(account.totp_secret, now + offset), at=at)

    # In time order, since each accepted step closes every step up to it.
    assert [accepted(offset) for offset in (-2, -1, 0, 2, 1)] == [False, True, True, False, True]
    assert not accepted(3)
    session.commit()
    assert account.totp_last_step == now + 1
    assert [e.reason for e in audit_events(session, "account.second_factor_failed", account.id)] == ["wrong"] * 3


# -- recovery codes ---------------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once(app, session, make_account):
    account = make_account(Role.RESEARCHER)
    codes = mfa.issue_recovery_codes(session, account)
    session.commit()

    first = new_client(app)
    _password(first, account)
    assert first.post("/login/code", data={"code": f" {codes[0].upper()} "}).status_code == 302
    assert first.get("/admin/").status_code == 200
    assert re.search(r'id="recovery-remaining">9<', page_text(first.get("/account/security")))

    second = new_client(app)
    _password(second, account)
    reused = second.post("/login/code", data={"code": codes[0]})
    assert reused.status_code == 400 and RETRY_MESSAGE in page_text(reused)
    assert second.get("/admin/").status_code == 302
    assert second.post("/login/code", data={"code": codes[1]}).status_code == 302
    assert session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))) == 8
    assert len(audit_events(session, "account.recovery_code_used", account.id)) == 2
    assert [e.reason for e in audit_events(session, "account.second_factor_failed", account.id)] == [
        "wrong recovery code"]


def test_new_recovery_codes_replace_the_old_ones(app, session, make_account):
    account = make_account(Role.AUDITOR)
    old = mfa.issue_recovery_codes(session, account)
    session.commit()
    old_hashes = _recovery_hashes(session, account)
    browser = signed_in(app, account)
    make_new = {"codes-submit": "Make new recovery codes"}

    refused = browser.post("/account/security", data={**make_new, "codes-code": wrong_code(account.totp_secret)})
    assert refused.status_code == 400 and RETRY_MESSAGE in page_text(refused)
    assert shown_recovery_codes(refused) == [] and _recovery_hashes(session, account) == old_hashes

    made = browser.post("/account/security", data={**make_new, "codes-code": fresh_code(account)})
    assert made.status_code == 200
    new = shown_recovery_codes(made)
    assert len(new) == 10 and not set(new) & set(old)
    assert _recovery_hashes(session, account) == sorted(_sha256(code) for code in new)

    other = new_client(app)
    _password(other, account)
    assert other.post("/login/code", data={"code": old[0]}).status_code == 400
    assert other.post("/login/code", data={"code": new[0]}).status_code == 302


# -- limits and the half-finished sign-in ---------------------------------------------------------------


@pytest.mark.parametrize("limit, shown", [("3 per 15 minutes", "3 per 15 minute"),
                                          ("10 per 15 minutes;3 per day", "3 per 1 day")],
                         ids=["per-window", "per-day"])
def test_wrong_codes_are_limited_per_account(make_app, make_account, limit, shown):
    app = make_app(SECOND_FACTOR_RATE_LIMIT=limit)
    with app.app_context():
        account = make_account(Role.RESEARCHER)
        bystander = make_account(Role.RESEARCHER)
        first = new_client(app)
        _password(first, account)
        for _ in range(3):
            assert first.post("/login/code", data={"code": wrong_code(account.totp_secret)}).status_code == 400
        blocked = first.post("/login/code", data={"code": fresh_code(account)})
        assert blocked.status_code == 429
        assert TOO_MANY in page_text(blocked)
        assert f"(the limit is {shown}). Try again once that time has passed." in page_text(blocked)
        assert first.get("/admin/").status_code == 302

        # A new browser at another address, signing in as the same account, meets the same limit.
        second = new_client(app)
        assert _password(second, account).headers["Location"] == "/login/code"
        assert second.post("/login/code", data={"code": fresh_code(account)}).status_code == 429
        assert second.get("/admin/").status_code == 302

        assert signed_in(app, bystander).get("/admin/").status_code == 200


def test_the_half_finished_sign_in_expires(app, client, session, make_account):
    account = make_account(Role.RESEARCHER)
    limit = app.config["SECOND_FACTOR_PENDING_SECONDS"]

    def started_ago(seconds: int) -> None:
        with client.session_transaction() as browser_session:
            pending = browser_session[PENDING]
            pending["at"] -= seconds
            browser_session[PENDING] = pending

    _password(client, account)
    started_ago(limit + 1)
    code = fresh_code(account)
    late = client.post("/login/code", data={"code": code})
    assert late.status_code == 302 and late.headers["Location"] == "/login"
    assert RESTART_MESSAGE in page_text(client.get("/login"))
    assert client.get("/admin/").status_code == 302
    session.refresh(account)
    assert account.totp_last_step is None  # the late code was not used up

    _password(client, account)
    started_ago(limit - 10)
    assert client.post("/login/code", data={"code": code}).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_the_half_finished_sign_in_ends_when_the_account_signs_out_everywhere(app, session, make_account):
    account = make_account(Role.RESEARCHER)
    elsewhere = signed_in(app, account)
    browser = new_client(app)
    assert _password(browser, account).headers["Location"] == "/login/code"
    elsewhere.post("/logout")  # every session of the account ends, this half-finished one included
    code = fresh_code(account)
    last_step = account.totp_last_step
    refused = browser.post("/login/code", data={"code": code})
    assert refused.status_code == 302 and refused.headers["Location"] == "/login"
    assert browser.get("/admin/").status_code == 302
    session.refresh(account)
    assert account.totp_last_step == last_step  # the code was not even tried


def test_providers_sign_in_with_the_password_only(client, make_account):
    provider = make_account(Role.PROVIDER)
    response = _password(client, provider)
    assert response.status_code == 302 and response.headers["Location"] == "/portal/"
    assert client.get("/portal/").status_code == 200
    with client.session_transaction() as browser_session:
        assert PENDING not in browser_session


# -- an admin resets someone's second factor ---------------------------------------------------------------


def test_an_admin_resets_another_staff_members_second_factor(app, session, make_account):
    admin = make_account(Role.ADMIN)
    member = make_account(Role.RESEARCHER)
    mfa.issue_recovery_codes(session, member)
    session.commit()
    member_browser = signed_in(app, member)
    admin_browser = signed_in(app, admin)
    assert "Reset second factor" in page_text(admin_browser.get(f"/admin/staff/{member.id}"))

    no_reason = admin_browser.post(f"/admin/staff/{member.id}/reset-second-factor", data={"reason": ""})
    assert no_reason.status_code == 400
    session.refresh(member)
    assert member.has_second_factor

    done = admin_browser.post(f"/admin/staff/{member.id}/reset-second-factor", data={"reason": "Lost their phone"})
    assert done.status_code == 302
    session.refresh(member)
    assert (member.totp_secret, member.totp_enabled_at, member.totp_last_step) == (None, None, None)
    assert _recovery_hashes(session, member) == []
    assert member_browser.get("/admin/").status_code == 302  # their sessions ended
    assert _password(new_client(app), member).headers["Location"] == "/login/enrol"
    [event] = audit_events(session, "account.second_factor_reset", member.id)
    assert (event.actor, event.reason) == (f"user:{admin.id}", "Lost their phone")
    # The person is told at once, with who did it and why, so a reset they did not ask for is noticed.
    mail = latest_mail(session, member.email, "second_factor_reset")
    assert admin.email in mail.body and "Lost their phone" in mail.body and "tell another admin" in mail.body

    # Nothing left to reset: refused with a message, nothing written, no second mail.
    again = admin_browser.post(f"/admin/staff/{member.id}/reset-second-factor", data={"reason": "Lost it again"})
    assert again.status_code == 400 and "has no second factor set up: there is nothing to reset." in page_text(again)
    assert len(audit_events(session, "account.second_factor_reset", member.id)) == 1


def test_an_admin_cannot_reset_their_own_second_factor(app, session, make_account):
    admin = make_account(Role.ADMIN)
    browser = signed_in(app, admin)
    own_page = page_text(browser.get(f"/admin/staff/{admin.id}"))
    assert "Reset second factor" not in own_page and "Another admin changes your own account." in own_page
    refused = browser.post(f"/admin/staff/{admin.id}/reset-second-factor", data={"reason": "I lost my phone"})
    assert refused.status_code == 400
    assert "Ask another admin to reset your own second factor." in page_text(refused)
    session.refresh(admin)
    assert admin.has_second_factor and admin.totp_secret
    assert browser.get("/admin/").status_code == 200
    assert audit_events(session, "account.second_factor_reset") == []


def test_making_new_recovery_codes_does_not_use_up_the_attempts(make_app, make_account):
    """The security page counts only refused forms against its limit: showing new codes is not a failure."""
    app = make_app(LOGIN_ACCOUNT_RATE_LIMIT="2 per 15 minutes")
    with app.app_context():
        account = make_account(Role.AUDITOR)
        browser = signed_in(app, account)
        for _ in range(3):
            made = browser.post("/account/security", data={"codes-submit": "Make new recovery codes",
                                                           "codes-code": fresh_code(account)})
            assert made.status_code == 200 and len(shown_recovery_codes(made)) == 10
        for _ in range(2):
            wrong = browser.post("/account/security", data={"codes-submit": "Make new recovery codes",
                                                            "codes-code": wrong_code(account.totp_secret)})
            assert wrong.status_code == 400
        assert browser.post("/account/security", data={"codes-submit": "Make new recovery codes",
                                                        "codes-code": fresh_code(account)}).status_code == 429


def test_the_authenticator_secret_is_sealed_at_rest_and_survives_a_key_rotation(make_app, make_account, session):
    """A database dump does not give away second factors; an old key keeps opening what it sealed."""
    from flask import current_app
    from sqlalchemy import text

    account = make_account(Role.RESEARCHER)
    secret = account.totp_secret
    stored = session.execute(text("select totp_secret from account where id = :id"), {"id": account.id}).scalar()
    assert stored.startswith("fernet:") and secret not in stored and len(secret) >= 32

    rotated = make_app(SEALING_KEY="a new sealing key of some length", SEALING_OLD_KEYS=[current_app.config["SECRET_KEY"]])
    with rotated.app_context():
        again = db.session.get(Account, account.id)
        assert again.totp_secret == secret
        assert mfa.verify(db.session, again, fresh_code(again))
        db.session.commit()
    unknown = make_app(SEALING_KEY="yet another key nobody sealed with")
    with unknown.app_context():
        from cryptography.fernet import InvalidToken

        with pytest.raises(InvalidToken):
            db.session.get(Account, account.id).totp_secret  # noqa: B018 - reading it decrypts it
        db.session.rollback()


def test_the_last_sign_in_is_recorded_after_the_second_factor_not_after_the_password(app, session, make_account):
    account = make_account(Role.RESEARCHER)
    browser = new_client(app)
    _password(browser, account)
    session.refresh(account)
    assert account.last_login_at is None  # a password alone is not a sign-in for staff
    assert browser.post("/login/code", data={"code": fresh_code(account)}).status_code == 302
    session.refresh(account)
    assert account.last_login_at is not None

    provider = make_account(Role.PROVIDER)
    assert _password(new_client(app), provider).status_code == 302
    session.refresh(provider)
    assert provider.last_login_at is not None


def test_a_set_up_that_lost_the_race_sends_the_person_to_the_code_page_without_the_dead_key(
        app, session, make_account, monkeypatch):
    account = make_account(Role.RESEARCHER, second_factor=False)
    browser = new_client(app)
    _password(browser, account)
    dead_secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page_text(browser.get("/login/enrol"))).group(1)

    # Another window finishes its set-up between this page's checks and its write.
    def lost(session_, account_, secret, code, at=None):
        raise Conflict("A second factor was set up for this account a moment ago, in another window. "
                       "Enter a code from the app you set up there.")

    monkeypatch.setattr(mfa, "enrol", lost)
    response = browser.post("/login/enrol", data={"code": mfa.code_at_step(dead_secret, mfa.current_step())})
    assert response.status_code == 302 and response.headers["Location"] == "/login/code"
    with browser.session_transaction() as cookie:
        assert "second_factor_enrol_secret" not in cookie
    session.refresh(account)
    assert account.last_login_at is None


def test_a_mistyped_code_is_audited_as_a_wrong_code_not_a_wrong_recovery_code(session, make_account):
    account = make_account(Role.RESEARCHER)
    for typed in ("12345", "1234567"):
        assert mfa.verify(session, account, typed) is False
    session.commit()
    assert [e.reason for e in audit_events(session, "account.second_factor_failed", account.id)] == ["wrong", "wrong"]
