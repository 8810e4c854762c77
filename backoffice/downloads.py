"""The one response that sends a stored document, for the portal's route and the case page's."""
from __future__ import annotations

from flask import abort, current_app, send_file
from flask_login import current_user

from backoffice.extensions import db
from backoffice.services import documents


def send_document(document_id: int):
    """The document as an attachment, typed and named by its content; 404 for anyone who may not read it."""
    try:
        found = documents.download(db.session, current_user, document_id, current_app.config["UPLOAD_FOLDER"])
    except documents.DocumentUnavailable:
        abort(404)
    return send_file(found.path, mimetype=found.content_type, as_attachment=True, download_name=found.name,
                     max_age=0)
