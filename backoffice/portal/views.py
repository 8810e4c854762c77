"""Provider home: the organisations this account acts for and where their requests stand."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from backoffice.auth.access import roles_required
from backoffice.extensions import db
from backoffice.models import OrganisationMember, Provider, Role, Submission

bp = Blueprint("portal", __name__)


@bp.route("/")
@roles_required(Role.PROVIDER)
def home():
    providers = db.session.scalars(
        select(Provider)
        .join(OrganisationMember, OrganisationMember.provider_id == Provider.id)
        .where(OrganisationMember.account_id == current_user.id)
        .options(selectinload(Provider.locations))
        .order_by(Provider.public_name)
    ).all()
    submissions = db.session.scalars(
        select(Submission)
        .where(Submission.provider_id.in_([p.id for p in providers]))
        .options(selectinload(Submission.transitions))
        .order_by(Submission.id.desc())
    ).all()
    by_provider: dict[int, list[Submission]] = {}
    for submission in submissions:
        by_provider.setdefault(submission.provider_id, []).append(submission)
    return render_template("portal/home.html", providers=providers, by_provider=by_provider)
