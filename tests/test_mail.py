"""Mail that reaches people: .eml files on the embedded default, SMTP (STARTTLS, TLS, AUTH) against a real
server on 127.0.0.1, retries on 4xx, failures on 5xx shown to staff, one Message-ID whatever is retried."""
from __future__ import annotations

import email
import email.policy
import io
import logging
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

import config
from backoffice.extensions import db
from backoffice.mail import MailSettingError, parse_mail_url
from backoffice.models import AuditEvent, DeliveryState, Notification, Role, utcnow
from backoffice.services import outbox
from tests.celery_helpers import start_celery  # noqa: F401 (fixture)
from tests.conftest import login
from tests.mail_server import SmtpServer, html_part, text_part

USER, SECRET = "backoffice", "s3cret-smtp-password"
SENDER = "Provider verification <no-reply@directory.example.org>"


def deliver(app) -> int:
    """One run of the delivery task, as beat starts it."""
    from tasks.sweeps import deliver_notifications

    with app.app_context():
        return deliver_notifications.apply().get()


def register(client, email_address="intake@harbor.example.org", name="Ada Byron"):
    response = client.post("/register", data={"name": name, "email": email_address,
                                              "password": "correct horse battery staple",
                                              "confirm": "correct horse battery staple"})
    assert response.status_code == 200


def note_for(session, address: str) -> Notification:
    session.expire_all()
    return session.scalars(select(Notification).where(Notification.recipient_email == address)
                           .order_by(Notification.id.desc())).first()


@pytest.fixture
def smtp(tmp_path):
    servers = []

    def start(**options) -> SmtpServer:
        folder = tmp_path / f"smtp-{len(servers)}"
        folder.mkdir()
        server = SmtpServer(folder, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def smtp_app(make_app, server: SmtpServer, **settings):
    return make_app(MAIL_URL=server.url(**settings.pop("url", {"user": USER, "password": SECRET})),
                    MAIL_CA_BUNDLE=str(server.ca), MAIL_FROM=SENDER, PUBLIC_BASE_URL="https://backoffice.example.org/",
                    **settings)


# -- MAIL_URL and production ---------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("smtp://u:p@mail.example.org:587", ("mail.example.org", 587, "starttls", "u", "p")),
    ("smtp://u:p%40ss@mail.example.org", ("mail.example.org", 587, "starttls", "u", "p@ss")),
    ("smtps://u:p@mail.example.org", ("mail.example.org", 465, "implicit", "u", "p")),
    ("smtp://relay.internal?tls=none", ("relay.internal", 25, "none", None, None)),
])
def test_mail_url_names_the_server_and_how_to_reach_it(url, expected):
    server = parse_mail_url(url)
    assert (server.host, server.port, server.tls, server.username, server.password) == expected


@pytest.mark.parametrize("url, says", [
    ("http://u:hunter2@mail.example.org", "MAIL_URL must be smtp://"),
    ("smtp://u:hunter2@mail.example.org:notaport", "MAIL_URL is not a URL"),
    ("smtp://u:hunter2@mail.example.org?tls=none", "password in the clear"),
    ("smtps://mail.example.org?tls=none", "smtps:// and tls=none"),
    ("smtp://mail.example.org?starttls=no", "only ?tls=none"),
])
def test_a_mail_url_that_cannot_work_is_refused_in_one_line_without_its_password(url, says):
    with pytest.raises(MailSettingError) as refused:
        parse_mail_url(url)
    message = str(refused.value)
    assert says in message and "\n" not in message and "hunter2" not in message


def test_production_refuses_to_start_without_a_mail_server_or_a_sender(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://backoffice.example.org/")
    monkeypatch.delenv("MAIL_URL", raising=False)
    with pytest.raises(RuntimeError, match=r"^MAIL_URL must be set in production"):
        config.load("production")
    monkeypatch.setenv("MAIL_URL", "smtp://u:p@mail.example.org:587")
    monkeypatch.delenv("MAIL_FROM", raising=False)
    with pytest.raises(RuntimeError, match=r"^MAIL_FROM must be set in production"):
        config.load("production")
    monkeypatch.setenv("MAIL_FROM", "not an address")
    with pytest.raises(RuntimeError, match=r"^MAIL_FROM must be an address"):
        config.load("production")
    monkeypatch.setenv("MAIL_FROM", SENDER)
    assert config.load("production")["MAIL_FROM"] == SENDER


# -- the embedded default: .eml files ------------------------------------------------------------


def test_on_the_embedded_default_each_message_is_an_eml_file_a_mail_program_opens(app, client, session, caplog):
    register(client)
    caplog.set_level(logging.INFO, logger="backoffice.services.outbox")
    assert deliver(app) == 1
    files = sorted(Path(app.config["OUTBOX_FOLDER"]).glob("*.eml"))
    assert [path.name for path in files] == [f"{note_for(session, 'intake@harbor.example.org').id:08d}-confirm_email.eml"]
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    note = note_for(session, "intake@harbor.example.org")
    assert message["To"] == "intake@harbor.example.org"
    assert message["From"] == config.DEFAULT_SENDER
    assert message["Subject"] == "Confirm your e-mail address"
    assert message["Message-ID"] == note.message_id and note.message_id.endswith("@backoffice.localhost>")
    assert message["Auto-Submitted"] == "auto-generated" and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    link = re.search(r"http://localhost/confirm/\S+", text_part(message)).group(0)
    assert f'href="{link}"' in html_part(message)
    assert note.delivery_state is DeliveryState.SENT and note.attempts == 1
    assert note.last_reply == f"written to {files[0]}"
    assert f"written to {files[0]}" in caplog.text


def test_a_message_is_delivered_once_and_a_second_run_sends_nothing(app, client, session):
    register(client)
    assert deliver(app) == 1
    assert deliver(app) == 0
    assert len(list(Path(app.config["OUTBOX_FOLDER"]).glob("*.eml"))) == 1


# -- SMTP against a real server ------------------------------------------------------------------


def test_over_starttls_with_a_password_the_message_arrives_with_its_headers_both_parts_and_the_link(
        make_app, smtp):
    server = smtp(security="starttls", users={USER: SECRET})
    app = smtp_app(make_app, server)
    with app.app_context():
        register(app.test_client())
        assert deliver(app) == 1
        note = note_for(db.session, "intake@harbor.example.org")
        [message] = server.wait_for(1)
        assert server.logins == [USER]
        assert server.handler.envelopes == [("no-reply@directory.example.org", ["intake@harbor.example.org"])]
        assert message["Message-ID"] == note.message_id and note.message_id.endswith("@directory.example.org>")
        assert message["From"] == SENDER and message["Subject"] == "Confirm your e-mail address"
        link = re.search(r"https://backoffice\.example\.org/confirm/\S+", text_part(message)).group(0)
        assert f'href="{link}"' in html_part(message)
        assert note.delivery_state is DeliveryState.SENT and note.last_reply == "250 2.0.0 Ok: queued as M1"


def test_over_implicit_tls_the_message_arrives(make_app, smtp):
    server = smtp(security="implicit", users={USER: SECRET})
    app = smtp_app(make_app, server, url={"scheme": "smtps", "user": USER, "password": SECRET})
    with app.app_context():
        register(app.test_client())
        assert deliver(app) == 1
        assert [m["Subject"] for m in server.wait_for(1)] == ["Confirm your e-mail address"]


def test_a_server_that_does_not_offer_starttls_gets_nothing_in_the_clear(make_app, smtp):
    server = smtp(security="none")
    app = smtp_app(make_app, server, url={})
    with app.app_context():
        register(app.test_client())
        assert deliver(app) == 0
        note = note_for(db.session, "intake@harbor.example.org")
        assert server.messages == []
        assert note.delivery_state is DeliveryState.PENDING and note.attempts == 1
        assert "does not offer STARTTLS" in note.last_error


def test_a_wrong_password_is_kept_for_another_try_with_the_servers_reply(make_app, smtp):
    server = smtp(security="starttls", users={USER: SECRET})
    app = smtp_app(make_app, server, url={"user": USER, "password": "wrong"})
    with app.app_context():
        register(app.test_client())
        deliver(app)
        note = note_for(db.session, "intake@harbor.example.org")
        assert server.messages == [] and note.delivery_state is DeliveryState.PENDING
        assert note.last_error.startswith("535")


def test_a_451_is_tried_again_later_and_then_delivered_with_the_same_message_id(make_app, smtp):
    server = smtp(security="starttls", users={USER: SECRET})
    server.handler.replies.append("451 4.3.0 Mailbox busy, try again later")
    app = smtp_app(make_app, server)
    with app.app_context():
        register(app.test_client())
        assert deliver(app) == 0
        note = note_for(db.session, "intake@harbor.example.org")
        first_id = note.message_id
        assert note.delivery_state is DeliveryState.PENDING and note.attempts == 1
        assert note.last_error == "451 4.3.0 Mailbox busy, try again later"
        wait = (note.next_attempt_at - note.attempt_started_at).total_seconds()
        assert round(wait) == app.config["MAIL_RETRY_BACKOFF_SECONDS"] == 60
        assert deliver(app) == 0, "a message is not tried again before its back-off has passed"
        db.session.execute(update(Notification).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert deliver(app) == 1
        [message] = server.wait_for(1)
        note = note_for(db.session, "intake@harbor.example.org")
        assert message["Message-ID"] == first_id == note.message_id
        assert note.delivery_state is DeliveryState.SENT and note.attempts == 2 and note.last_error is None


def test_the_back_off_doubles_and_the_last_attempt_gives_up(make_app, smtp):
    server = smtp(security="starttls", users={USER: SECRET})
    app = smtp_app(make_app, server, MAIL_MAX_ATTEMPTS=3)
    server.handler.replies.extend(["421 4.7.0 Too busy"] * 3)
    with app.app_context():
        register(app.test_client())
        waits = []
        for _ in range(3):
            deliver(app)
            note = note_for(db.session, "intake@harbor.example.org")
            if note.delivery_state is DeliveryState.PENDING:
                waits.append(round((note.next_attempt_at - note.attempt_started_at).total_seconds()))
                db.session.execute(update(Notification).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
                db.session.commit()
        assert waits == [60, 120]
        assert note.delivery_state is DeliveryState.FAILED and note.attempts == 3
        assert note.last_error == "421 4.7.0 Too busy"
        assert server.messages == []


def test_no_connection_is_a_temporary_failure_that_names_the_server(make_app, smtp):
    server = smtp(security="starttls")
    server.close()
    app = smtp_app(make_app, server, url={})
    with app.app_context():
        register(app.test_client())
        deliver(app)
        note = note_for(db.session, "intake@harbor.example.org")
        assert note.delivery_state is DeliveryState.PENDING
        assert note.last_error.startswith(f"localhost:{server.port}: ") and "refused" in note.last_error.lower()


def test_a_550_marks_the_message_undelivered_audits_it_and_shows_it_to_staff_who_can_send_it_again(
        make_app, smtp, make_account):
    server = smtp(security="starttls", users={USER: SECRET})
    server.handler.replies.append("550 5.1.1 <intake@harbor.example.org>: Recipient address rejected")
    app = smtp_app(make_app, server)
    with app.app_context():
        register(app.test_client())
        deliver(app)
        note = note_for(db.session, "intake@harbor.example.org")
        assert note.delivery_state is DeliveryState.FAILED and note.attempts == 1
        assert note.last_error == "550 5.1.1 <intake@harbor.example.org>: Recipient address rejected"
        failed = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "notification.failed")).one()
        assert failed.entity_id == str(note.id) and "Recipient address rejected" in failed.reason
        assert deliver(app) == 0, "a refused message is not tried again by itself"

        researcher = make_account(Role.RESEARCHER)
        client = app.test_client()
        login(client, researcher)
        dashboard = client.get("/admin/").get_data(as_text=True)
        assert "1 message could not be delivered" in dashboard
        page = client.get("/admin/mail/").get_data(as_text=True)
        assert "Could not be delivered (1)" in page
        assert "intake@harbor.example.org" in page and "e-mail address confirmation" in page
        assert "550 5.1.1" in page and "Recipient address rejected" in page
        assert "/confirm/" not in page, "staff never see a body, which carries a sign-in link"

        answer = client.post(f"/admin/mail/{note.id}/retry", follow_redirects=True).get_data(as_text=True)
        assert f"Message #{note.id} to intake@harbor.example.org will be sent again" in answer
        again = client.post(f"/admin/mail/{note.id}/retry", follow_redirects=True).get_data(as_text=True)
        assert "was not sent again: This message is waiting to be sent" in again
        retried = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "notification.retried")).one()
        assert retried.actor == f"user:{researcher.id}"
        assert deliver(app) == 1
        [message] = server.wait_for(1)
        assert message["Message-ID"] == note_for(db.session, "intake@harbor.example.org").message_id


def test_the_outgoing_mail_page_is_for_the_research_team_and_admins_only(app, client, make_account):
    for role, status in ((Role.AUDITOR, 403), (Role.PROVIDER, 403), (Role.ADMIN, 200), (Role.RESEARCH_LEAD, 200)):
        browser = app.test_client()
        login(browser, make_account(role))
        assert browser.get("/admin/mail/").status_code == status, role
    anonymous = app.test_client().get("/admin/mail/")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login?next=")


def test_markup_in_a_name_or_subject_is_text_in_the_html_part(app, session, make_account):
    account = make_account(Role.PROVIDER, email="x@harbor.example.org")
    outbox.enqueue(session, kind="decided", account=account,
                   subject='Decision on <img src=x onerror="alert(1)">',
                   body='Dear <script>alert("x")</script>,\n\nSee https://backoffice.example.org/portal/requests/4',
                   link="https://backoffice.example.org/portal/requests/4")
    session.commit()
    deliver(app)
    [path] = Path(app.config["OUTBOX_FOLDER"]).glob("*.eml")
    html = html_part(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img" in html
    assert '<a href="https://backoffice.example.org/portal/requests/4"' in html


# -- a worker killed between sending and recording -----------------------------------------------


def test_a_worker_killed_after_sending_and_before_recording_resends_with_the_same_message_id(
        app, session, make_account, smtp, start_celery):
    from tasks.sweeps import deliver_notifications

    server = smtp(security="starttls", users={USER: SECRET})
    server.handler.hold.set()  # keep the message, then answer only once released: the worker dies waiting
    account = make_account(Role.PROVIDER, email="intake@harbor.example.org")
    outbox.enqueue(session, kind="decided", account=account, subject="Decision on request #7",
                   body="Your request #7 was approved.", link="https://backoffice.example.org/portal/requests/7")
    session.commit()
    settings = {"MAIL_URL": server.url(user=USER, password=SECRET), "MAIL_CA_BUNDLE": str(server.ca),
                "MAIL_FROM": SENDER, "MAIL_SENDING_LEASE_SECONDS": "2",
                "MAIL_DELIVERY_TIME_LIMIT_SECONDS": "1"}
    first = start_celery("worker", **settings)
    deliver_notifications.apply_async(queue=app.config["CELERY_QUEUE"])
    assert server.handler.kept.wait(60), "the worker never sent the message"
    first.kill()
    server.handler.hold.clear()
    note = note_for(session, "intake@harbor.example.org")
    assert note.delivery_state is DeliveryState.SENDING and note.attempts == 1, "claimed before sending"
    message_id = note.message_id

    start_celery("worker", **settings)
    deliver_notifications.apply_async(queue=app.config["CELERY_QUEUE"])
    session.rollback()
    # Within its lease the message is left alone: the first worker might still be answering.
    assert note_for(session, "intake@harbor.example.org").delivery_state is DeliveryState.SENDING
    time.sleep(2.5)
    deliver_notifications.apply_async(queue=app.config["CELERY_QUEUE"])
    messages = server.wait_for(2)
    deadline = time.monotonic() + 30
    while note_for(session, "intake@harbor.example.org").delivery_state is not DeliveryState.SENT:
        assert time.monotonic() < deadline, "the resent message was never recorded"
        time.sleep(0.1)
        session.rollback()
    note = note_for(session, "intake@harbor.example.org")
    assert [m["Message-ID"] for m in messages] == [message_id, message_id]
    assert note.attempts == 2 and note.message_id == message_id
    time.sleep(1)
    assert len(server.messages) == 2, "sent twice at most: the killed attempt and one resend"


# -- messages worth reading ----------------------------------------------------------------------


def test_a_question_and_a_decision_reach_the_provider_under_its_name_with_a_link_to_the_request(
        make_app, smtp, make_provider):
    from backoffice.models import AssessmentStatus, DecisionOutcome
    from backoffice.services import review
    from backoffice.services.review import Evidence, ReviewPolicy
    from tests.review_helpers import assess_all, in_review, provider_member, publish_catalogue, submitted

    server = smtp(security="starttls", users={USER: SECRET})
    app = smtp_app(make_app, server)
    with app.app_context():
        session = db.session
        publish_catalogue(session)
        provider = make_provider(public_name="Harbor <b>Recovery</b>")
        member = provider_member(session, lambda *roles: _account(session, *roles), provider)
        researcher = _account(session, Role.RESEARCHER)
        submission = in_review(session, researcher, submitted(session, member, provider))
        review.request_info(session, researcher, submission, "Which licence covers the Mineral site?", None)
        session.commit()
        review.answer_info_request(session, member, submission, "VA-123, attached.")
        session.commit()
        assess_all(session, researcher, submission, except_codes={"WEBSITE_TRANSPARENT"})
        review.record_assessment(session, researcher, submission, "WEBSITE_TRANSPARENT", AssessmentStatus.NOT_MET,
                                 Evidence(note="site names another company"), None)
        review.decide(session, researcher, submission, DecisionOutcome.REJECTED, ["WEBSITE_TRANSPARENT"],
                      "Your website must name your organisation.", "looks like a lead-gen site",
                      ReviewPolicy.from_config(app.config), None)
        session.commit()
        deliver(app)
        server.wait_for(4)  # the team is told of the submission and the answer too
        question, decision = [m for m in server.messages if m["To"] == member.email]
        page = f"https://backoffice.example.org/portal/requests/{submission.id}"
        # A subject Python folds right after "Subject:" reads back with the folding space; mail programs drop it.
        assert question["Subject"].strip() == (f"Harbor <b>Recovery</b>: the research team has a question about request "
                                       f"#{submission.id}")
        assert "Which licence covers the Mineral site?" in text_part(question)
        assert f"Open the page: {page}" in text_part(question)
        assert f'href="{page}"' in html_part(question) and "Harbor &lt;b&gt;Recovery&lt;/b&gt;" in html_part(question)
        assert decision["Subject"].strip() == f"Harbor <b>Recovery</b>: decision on request #{submission.id}"
        body = text_part(decision)
        assert "was not approved" in body and "WEBSITE_TRANSPARENT: " in body
        assert "Your website must name your organisation." in body and f"Open the page: {page}" in body
        assert "https://backoffice.example.org/criteria" in body
        assert "lead-gen" not in body and "lead-gen" not in html_part(decision), "internal notes stay inside"
        assert researcher.email not in body and (researcher.name or "@@") not in body, "staff stay unnamed"
        assert all(m["To"] == member.email for m in (question, decision))


def _account(session, *roles):
    from backoffice.services import accounts

    account = accounts.create_account(session, "system:test", email=f"{roles[0].value}-{len(roles)}-"
                                      f"{session.query(AuditEvent).count()}@example.org", name="Test Person",
                                      password="correct horse battery staple", roles=list(roles))
    session.commit()
    return account


def test_a_sending_lease_no_longer_than_the_delivery_time_limit_is_refused_at_start():
    with pytest.raises(config.SettingsError, match=r"^Settings refused: MAIL_SENDING_LEASE_SECONDS 300 is not "
                                                    r"longer than "
                                                    r"MAIL_DELIVERY_TIME_LIMIT_SECONDS 300: a message still"):
        config.load("testing", {"MAIL_SENDING_LEASE_SECONDS": 300})


# -- the provider's journey, following only the links the mail server received ------------------


def _link(message, prefix="https://backoffice.example.org/") -> str:
    """The path of the first link to the back-office in the message's text part, as a person would open it."""
    url = re.search(re.escape(prefix) + r"\S*", text_part(message)).group(0)
    assert f'href="{url}"' in html_part(message), "the HTML part links to the same page"
    return "/" + url[len(prefix):]


def test_register_confirm_submit_answer_and_read_the_decision_by_the_links_in_the_mail(
        make_app, smtp, make_account):
    from backoffice.models import DecisionOutcome, Submission
    from backoffice.services import review
    from backoffice.services.review import ReviewPolicy
    from tests.portal_helpers import PDF, submit_data
    from tests.review_helpers import assess_all, publish_catalogue

    server = smtp(security="starttls", users={USER: SECRET})
    app = smtp_app(make_app, server)
    provider_address = "intake@harbor.example.org"
    with app.app_context():
        session = db.session
        publish_catalogue(session)
        researcher = make_account(Role.RESEARCHER)
        client = app.test_client()

        register(client, provider_address)
        deliver(app)
        [confirmation] = [m for m in server.wait_for(1) if m["To"] == provider_address]
        confirmed = client.get(_link(confirmation))
        assert confirmed.status_code == 302 and confirmed.headers["Location"] == "/login"
        signed_in = client.post("/login", data={"email": provider_address, "password": "correct horse battery staple"})
        assert signed_in.headers["Location"] == "/portal/"

        created = client.post("/portal/organisations/new", data={"legal_name": "Harbor Recovery Center LLC",
                                                                   "public_name": "Harbor Recovery Center"})
        submission_id = int(re.search(r"/portal/requests/(\d+)/edit", created.headers["Location"]).group(1))
        client.post(f"/portal/requests/{submission_id}/documents",
                    data={"files": [(io.BytesIO(PDF), "state-licence.pdf")]},
                    content_type="multipart/form-data")
        assert client.post(f"/portal/requests/{submission_id}/edit", data=submit_data()).status_code == 302
        deliver(app)
        told = [m for m in server.messages if m["To"] == researcher.email]
        assert [m["Subject"].strip() for m in told] == [
            f"Harbor Recovery Center: request #{submission_id} submitted (new listing)"]
        assert _link(told[0]) == f"/admin/review/case/{submission_id}"

        submission = session.get(Submission, submission_id)
        review.claim(session, researcher, submission, None)
        review.request_info(session, researcher, submission, "Please send the CARF accreditation letter.", None)
        session.commit()
        deliver(app)
        question = [m for m in server.messages if m["To"] == provider_address][-1]
        assert "has a question" in question["Subject"]
        page_path = _link(question)
        assert page_path == f"/portal/requests/{submission_id}"
        page = client.get(page_path).get_data(as_text=True)
        assert "Please send the CARF accreditation letter." in page and 'id="answer-form"' in page
        session.expire_all()
        answered = client.post(page_path + "/answer", data={
            "message": "Attached.", "version": str(session.get(Submission, submission_id).row_version)})
        assert answered.status_code == 302
        deliver(app)
        assert [m["Subject"].strip() for m in server.messages if m["To"] == researcher.email][-1] == \
            f"Harbor Recovery Center answered your question on request #{submission_id}"

        session.expire_all()
        submission = session.get(Submission, submission_id)
        assess_all(session, researcher, submission)
        review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "Welcome to the directory.",
                      "internal: fine", ReviewPolicy.from_config(app.config), None)
        session.commit()
        deliver(app)
        decision = [m for m in server.messages if m["To"] == provider_address][-1]
        assert decision["Subject"].strip() == f"Harbor Recovery Center: decision on request #{submission_id}"
        assert "internal: fine" not in decision.as_string()
        page = client.get(_link(decision)).get_data(as_text=True)
        assert "Decision: approved" in page and "Welcome to the directory." in page
        message_ids = [m["Message-ID"] for m in server.messages]
        assert len(set(message_ids)) == len(message_ids), "one Message-ID per message"


def test_an_admin_sees_only_the_mail_about_staff_accounts(app, session, make_account):
    provider = make_account(Role.PROVIDER, email="intake@harbor.example.org")
    newcomer = make_account(Role.RESEARCHER, email="newcomer@directory.example.org")
    for account, kind, subject in ((provider, "decided", "Harbor Recovery: decision on request #4"),
                                   (newcomer, "staff_welcome", "Your staff account")):
        note = outbox.enqueue(session, kind=kind, account=account, subject=subject, body="b")
        note.delivery_state, note.attempts, note.failed_at = DeliveryState.FAILED, 1, utcnow()
        note.last_error = "550 5.1.1 no such user"
    session.commit()
    provider_note = note_for(session, "intake@harbor.example.org")
    admin = app.test_client()
    login(admin, make_account(Role.ADMIN))
    page = admin.get("/admin/mail/").get_data(as_text=True)
    assert "newcomer@directory.example.org" in page and "Your staff account" in page
    assert "intake@harbor.example.org" not in page and "Harbor Recovery" not in page
    assert "Could not be delivered (1)" in page
    assert "1 message could not be delivered" in admin.get("/admin/").get_data(as_text=True)
    refused = admin.post(f"/admin/mail/{provider_note.id}/retry", follow_redirects=True).get_data(as_text=True)
    assert "was not sent again: There is no such message." in refused
    assert note_for(session, "intake@harbor.example.org").delivery_state is DeliveryState.FAILED
    researcher = app.test_client()
    login(researcher, make_account(Role.RESEARCHER))
    assert "Could not be delivered (2)" in researcher.get("/admin/mail/").get_data(as_text=True)
