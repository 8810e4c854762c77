"""Uploads: decided by content, size-capped, hashed, stored under a generated name, never half-kept."""
import hashlib
import io
from pathlib import Path

from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import AuditEvent, Document, Role, SubmissionState
from backoffice.services import documents, review
from tests.portal_helpers import ELF, EXECUTABLE, JPEG, PDF, PNG, provider_with_draft, reload, submit_data


def _upload(client, submission_id, *files):
    return client.post(f"/portal/requests/{submission_id}/documents",
                       data={"files": [(io.BytesIO(content), name) for content, name in files]},
                       content_type="multipart/form-data")


def _stored_files(app) -> list[Path]:
    folder = Path(app.config["UPLOAD_FOLDER"])
    return sorted(p for p in folder.iterdir()) if folder.exists() else []


ACCEPTED = [
    (PDF, "licence.pdf", "application/pdf"), (PNG, "scan.png", "image/png"), (JPEG, "photo.jpeg", "image/jpeg"),
    # The name does not decide: a real PDF named .txt is a PDF.
    (PDF, "letter.txt", "application/pdf"),
]
REFUSED = [
    (EXECUTABLE, "licence.pdf"), (ELF, "scan.png"), (b"<html><script>alert(1)</script></html>", "page.jpg"),
    (b"#!/bin/sh\nrm -rf /\n", "run.pdf"), (b"PK\x03\x04" + b"\x00" * 40, "archive.pdf"), (b"", "empty.pdf"),
]


def test_pdf_png_and_jpeg_are_accepted_by_their_content(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    for content, name, content_type in ACCEPTED:
        assert _upload(client, draft.id, (content, name)).status_code == 302
        document = session.scalar(select(Document).order_by(Document.id.desc()).limit(1))
        assert document.content_type == content_type and document.size == len(content), name
        assert document.sha256 == hashlib.sha256(content).hexdigest()
        assert document.original_name == name and document.storage_key != name
        assert (Path(app.config["UPLOAD_FOLDER"]) / document.storage_key).read_bytes() == content
        download = client.get(f"/portal/documents/{document.id}")
        assert download.data == content and download.mimetype == content_type
        assert download.headers["Content-Disposition"].startswith("attachment")


def test_a_renamed_executable_or_other_file_is_refused_and_nothing_is_kept(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    for content, name in REFUSED:
        # The declared type says PDF; only the bytes count.
        response = client.post(f"/portal/requests/{draft.id}/documents",
                               data={"files": [(io.BytesIO(content), name, "application/pdf")]},
                               content_type="multipart/form-data")
        page = response.get_data(as_text=True)
        assert response.status_code == 400, name
        assert "is not a PDF, PNG or JPEG file" in page or "is empty" in page, name
        assert session.scalar(select(func.count()).select_from(Document)) == 0
        assert _stored_files(app) == []


def test_an_oversized_file_is_refused_with_the_limit_in_plain_words(make_app, make_account):
    app = make_app(UPLOAD_MAX_BYTES=2048)
    with app.app_context():
        client = app.test_client()
        owner, provider, draft = provider_with_draft(db.session, make_account, client)
        response = _upload(client, draft.id, (PDF + b"0" * 4096, "big.pdf"))
        assert response.status_code == 400 and "big.pdf is larger than the 2 KB limit" in response.get_data(as_text=True)
        assert db.session.scalar(select(func.count()).select_from(Document)) == 0
        assert _stored_files(app) == []
        assert _upload(client, draft.id, (PDF, "small.pdf")).status_code == 302


def test_a_request_body_over_the_site_limit_gets_413(make_app, make_account):
    app = make_app(MAX_CONTENT_LENGTH=4096)
    with app.app_context():
        client = app.test_client()
        owner, provider, draft = provider_with_draft(db.session, make_account, client)
        response = _upload(client, draft.id, (PDF + b"0" * 8192, "huge.pdf"))
        assert response.status_code == 413 and "Upload too large" in response.get_data(as_text=True)
        assert db.session.scalar(select(func.count()).select_from(Document)) == 0


TRAVERSALS = [
    ("../../../../etc/cron.d/evil.pdf", "evil.pdf"), ("..\\..\\windows\\system32\\evil.pdf", "evil.pdf"),
    ("/absolute/path/evil.pdf", "evil.pdf"), ("..", "document"), ("evil\x00.pdf", "evil.pdf"),
    (".htaccess", "htaccess"),
]


def test_a_name_with_path_traversal_is_stored_under_a_generated_name(app, client, session, make_account, tmp_path):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    folder = Path(app.config["UPLOAD_FOLDER"])
    for name, shown in TRAVERSALS:
        # Werkzeug already strips some of these; the store must hold even for names that reach it raw.
        document = documents.store(session, owner, draft, io.BytesIO(PDF), name, str(folder), 10_000)
        session.commit()
        assert document.original_name == shown, name
        stored = folder / document.storage_key
        assert stored.is_file() and stored.suffix == ".pdf" and len(stored.stem) == 32
        # Through the page as well.
        assert _upload(client, draft.id, (PDF, name)).status_code == 302
    assert all(p.parent == folder for p in _stored_files(app))
    assert not [p for p in tmp_path.rglob("*") if "evil" in p.name or p.name == "htaccess"]


def test_too_many_files_at_once_are_refused(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    limit = app.config["UPLOAD_MAX_FILES_PER_REQUEST"]
    response = _upload(client, draft.id, *[(PDF, f"{i}.pdf") for i in range(limit + 1)])
    assert response.status_code == 400 and f"at most {limit} files" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_one_bad_file_among_good_ones_keeps_none(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    response = _upload(client, draft.id, (PDF, "good.pdf"), (EXECUTABLE, "bad.pdf"))
    assert response.status_code == 400
    assert session.scalar(select(func.count()).select_from(Document)) == 0
    assert _stored_files(app) == []


def test_an_answer_that_fails_keeps_none_of_its_files(app, client, session, make_account):
    from tests.review_helpers import in_review, publish_catalogue

    publish_catalogue(session)
    owner, provider, draft = provider_with_draft(session, make_account, client)
    client.post(f"/portal/requests/{draft.id}/edit", data=submit_data())
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, reload(session, draft))
    review.request_info(session, researcher, submission, "Send the licence.", None)
    session.commit()
    stale = client.post(f"/portal/requests/{draft.id}/answer", content_type="multipart/form-data",
                        data={"message": "Here.", "version": "1", "files": [(io.BytesIO(PDF), "licence.pdf")]})
    assert stale.status_code == 400 and "Someone else changed this request" in stale.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Document)) == 0
    assert _stored_files(app) == []
    assert reload(session, draft).state == SubmissionState.NEEDS_INFO


def test_uploads_are_refused_once_the_request_is_with_the_research_team(client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    client.post(f"/portal/requests/{draft.id}/edit", data=submit_data())
    response = _upload(client, draft.id, (PDF, "late.pdf"))
    assert response.status_code == 400 and "Documents can be added to a draft" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_each_upload_is_audited_with_its_hash(client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    _upload(client, draft.id, (PNG, "a.png"))
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "document.uploaded"))
    assert event.after["sha256"] == hashlib.sha256(PNG).hexdigest() and event.provider_id == provider.id


def test_a_missing_file_on_disk_is_a_404_not_an_error(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    _upload(client, draft.id, (PDF, "a.pdf"))
    document = session.scalar(select(Document))
    (Path(app.config["UPLOAD_FOLDER"]) / document.storage_key).unlink()
    assert client.get(f"/portal/documents/{document.id}").status_code == 404
