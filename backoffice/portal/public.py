"""Pages anyone may read without signing in: the listing criteria the research team applies, and the icon
browsers ask for on their own."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, send_from_directory

from backoffice.auth.access import public
from backoffice.extensions import db
from backoffice.services import criteria
from backoffice.vocab import LEVELS_OF_CARE

bp = Blueprint("public", __name__)


@bp.route(criteria.PAGE_PATH)
@public
def criteria_page():
    """The current catalogue: each criterion, what it asks for, the evidence it needs and whom it applies to."""
    return render_template("public/criteria.html", catalogue=criteria.current(db.session),
                           levels_of_care=LEVELS_OF_CARE)


@bp.route("/favicon.ico")
@public
def favicon():
    """Browsers ask for /favicon.ico on pages that name no icon (a JSON answer of the feed): the same icon."""
    return send_from_directory(current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400)
