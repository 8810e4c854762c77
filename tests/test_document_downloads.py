"""A document is downloaded as an attachment typed and named by its content, through both routes that serve
documents (the portal's and the case page's), and only to those who may read it."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.http import parse_options_header

from backoffice.models import Document, Role
from backoffice.services import documents
from tests.portal_helpers import JPEG, PDF, PNG, provider_with_draft
from tests.security_helpers import signed_in

ROUTES = ("/portal/documents/{id}", "/admin/review/documents/{id}")


def _saved_as(response) -> tuple[str, str]:
    """How a browser treats the response (attachment or inline) and the name it saves it under."""
    disposition, options = parse_options_header(response.headers["Content-Disposition"])
    return disposition, options["filename"]


def _uploaded(client, session, draft, content: bytes, name: str) -> Document:
    response = client.post(f"/portal/requests/{draft.id}/documents", data={"files": [(io.BytesIO(content), name)]},
                           content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)
    return session.scalar(select(Document).order_by(Document.id.desc()).limit(1))


@pytest.mark.parametrize("name, expected", [
    ("invoice.html", "invoice.png"), ("invoice", "invoice.png"), ("invoice.PNG", "invoice.png"),
    ("x.pdf.exe", "x.png"), ("scan.tar.gz", "scan.png"), ("Licence v2.3 scan.html", "Licence v2.3 scan.png"),
    ("report 2024.06", "report 2024.06.png"), ("Dr. Jones licence.htm", "Dr. Jones licence.png"),
])
def test_a_png_is_downloaded_as_a_png_whatever_it_was_called(app, client, session, make_account, name, expected):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    document = _uploaded(client, session, draft, PNG, name)
    assert document.original_name == name  # the page still shows the name it was uploaded under
    researcher = signed_in(app, make_account(Role.RESEARCHER))
    for route, browser in ((ROUTES[0], client), (ROUTES[0], researcher), (ROUTES[1], researcher)):
        download = browser.get(route.format(id=document.id))
        assert download.status_code == 200, route
        assert download.data == PNG
        assert download.headers["Content-Type"] == "image/png"
        assert _saved_as(download) == ("attachment", expected), route
        assert download.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("content, name, content_type, expected", [
    (PDF, "x.pdf.exe", "application/pdf", "x.pdf"), (PDF, "letter.txt", "application/pdf", "letter.pdf"),
    (PDF, "licence.pdf", "application/pdf", "licence.pdf"), (JPEG, "photo.jpeg", "image/jpeg", "photo.jpeg"),
    (JPEG, "photo.html", "image/jpeg", "photo.jpg"), (PDF, "x.exe.pdf", "application/pdf", "x.pdf"),
])
def test_every_kind_carries_its_own_extension_on_both_routes(app, client, session, make_account, content, name,
                                                              content_type, expected):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    document = _uploaded(client, session, draft, content, name)
    auditor = signed_in(app, make_account(Role.AUDITOR))
    for route, browser in ((ROUTES[0], client), (ROUTES[1], auditor)):
        download = browser.get(route.format(id=document.id))
        assert download.headers["Content-Type"] == content_type
        assert _saved_as(download) == ("attachment", expected), route


def test_a_name_beyond_ascii_keeps_its_stem_in_the_encoded_filename(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    document = _uploaded(client, session, draft, PNG, "Lizenz für Ärzte.html")
    download = signed_in(app, make_account(Role.RESEARCHER)).get(ROUTES[1].format(id=document.id))
    assert _saved_as(download) == ("attachment", "Lizenz für Ärzte.png")
    assert "filename*=UTF-8''Lizenz%20f%C3%BCr%20%C3%84rzte.png" in download.headers["Content-Disposition"]


def test_the_case_page_route_refuses_a_stored_name_outside_the_upload_folder(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    document = _uploaded(client, session, draft, PDF, "licence.pdf")
    folder = Path(app.config["UPLOAD_FOLDER"])
    outside = folder.parent / "outside.pdf"
    outside.write_bytes(PDF + b"% not evidence\n")
    document.storage_key = "../outside.pdf"
    session.commit()
    researcher = signed_in(app, make_account(Role.RESEARCHER))
    for route, browser in ((ROUTES[0], client), (ROUTES[1], researcher)):
        assert browser.get(route.format(id=document.id)).status_code == 404, route


def test_a_stored_file_that_is_no_longer_what_was_accepted_is_not_served(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    document = _uploaded(client, session, draft, PNG, "scan.png")
    (Path(app.config["UPLOAD_FOLDER"]) / document.storage_key).write_bytes(b"<html><script>alert(1)</script>")
    researcher = signed_in(app, make_account(Role.RESEARCHER))
    for route, browser in ((ROUTES[0], client), (ROUTES[1], researcher)):
        assert browser.get(route.format(id=document.id)).status_code == 404, route


def test_another_provider_and_an_admin_get_nothing_from_either_route(app, client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    document = _uploaded(client, session, draft, PDF, "licence.pdf")
    stranger = make_account(Role.PROVIDER)
    other = signed_in(app, stranger)
    assert other.get(ROUTES[0].format(id=document.id)).status_code == 404
    assert other.get(ROUTES[1].format(id=document.id)).status_code in (302, 403)
    admin = signed_in(app, make_account(Role.ADMIN))
    assert admin.get(ROUTES[0].format(id=document.id)).status_code == 403
    assert admin.get(ROUTES[1].format(id=document.id)).status_code == 403
    with pytest.raises(documents.DocumentUnavailable):
        documents.download(session, stranger, document.id, app.config["UPLOAD_FOLDER"])
    # The same refusal for a document that does not exist, so ids cannot be probed.
    with pytest.raises(documents.DocumentUnavailable) as missing:
        documents.download(session, owner, document.id + 1000, app.config["UPLOAD_FOLDER"])
    with pytest.raises(documents.DocumentUnavailable) as not_yours:
        documents.download(session, stranger, document.id, app.config["UPLOAD_FOLDER"])
    assert str(missing.value) == str(not_yours.value)
