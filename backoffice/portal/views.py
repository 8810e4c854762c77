"""The provider portal: organisations, listing requests, questions, documents, decisions.

Every page loads its organisation, request or document through the signed-in account's memberships, so
another provider's id in a URL or a form finds nothing (404); the services check membership again.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from backoffice import formatting, unit_of_work, zones
from backoffice.auth.access import roles_required
from backoffice.downloads import send_document
from backoffice.extensions import db
from backoffice.models import Account, Document, OrganisationMember, Provider, Role, Submission
from backoffice.portal.forms import (
    ActionForm,
    AdvertiseForm,
    AnswerForm,
    ListingForm,
    OrganisationForm,
    OrganisationZoneForm,
    UploadForm,
    WithdrawForm,
)
from backoffice.services import (
    advertising,
    advertising_copy,
    criteria,
    documents,
    listing_requests,
    profile,
    reverification,
    review,
    time_zones,
)
from backoffice.services.errors import DomainError
from backoffice.services.listing_requests import IncompleteRequest

bp = Blueprint("portal", __name__)
provider_only = roles_required(Role.PROVIDER)


def _policy() -> review.ReviewPolicy:
    return review.ReviewPolicy.from_config(current_app.config)


def _mine(query):
    """Restrict a query over Provider to the organisations the signed-in account acts for."""
    return query.join(OrganisationMember, OrganisationMember.provider_id == Provider.id).where(
        OrganisationMember.account_id == current_user.id)


def _own_provider(provider_id: int) -> Provider:
    provider = db.session.scalar(_mine(select(Provider).where(Provider.id == provider_id)))
    if provider is None:
        abort(404)
    formatting.read_as_organisation(provider)
    return provider


def _own_submission(submission_id: int) -> Submission:
    submission = db.session.scalar(_mine(
        select(Submission).join(Provider, Provider.id == Submission.provider_id)
        .where(Submission.id == submission_id)
        .options(selectinload(Submission.transitions), selectinload(Submission.messages),
                 selectinload(Submission.documents), selectinload(Submission.decisions))))
    if submission is None:
        abort(404)
    formatting.read_as_organisation(submission.provider)
    return submission


@bp.route("/")
@provider_only
def home():
    providers = db.session.scalars(
        _mine(select(Provider)).options(selectinload(Provider.locations)).order_by(Provider.public_name)).all()
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


# -- organisations --------------------------------------------------------------------------------


@bp.route("/organisations/new", methods=["GET", "POST"])
@provider_only
def new_organisation():
    def created(draft: Submission):
        flash("Organisation created. Fill in the listing request below; save it as a draft at any time.", "success")
        return redirect(url_for(".edit_request", submission_id=draft.id))

    def again(form, status):
        return render_template("portal/organisation_new.html", form=form), 400 if form.errors else 200

    def refused(form, error, status):
        form.legal_name.errors.append(str(error))
        return again(form, status)

    return unit_of_work.submit(
        OrganisationForm(), lambda form: listing_requests.create_organisation(
            db.session, current_user, form.legal_name.data, form.public_name.data),
        done=created, again=again, refused=refused)


def _zone_form(provider: Provider, formdata: bool = False) -> OrganisationZoneForm:
    form = OrganisationZoneForm() if formdata else OrganisationZoneForm(formdata=None,
                                                                        time_zone=provider.time_zone or "")
    derived = time_zones.state_zone_name(db.session, provider.id) or formatting.display_zone_name()
    form.time_zone.choices = [("", f"From your first location: {derived.replace('_', ' ')}"),
                              *zones.zone_choices()]
    return form


@bp.route("/organisations/<int:provider_id>")
@provider_only
def organisation(provider_id: int, error: str | None = None, status: int = 200,
                 zone_form: OrganisationZoneForm | None = None):
    provider = _own_provider(provider_id)
    requests = db.session.scalars(select(Submission).where(Submission.provider_id == provider.id)
                                  .order_by(Submission.id.desc())).all()
    open_request = listing_requests.open_listing_request(db.session, provider)
    return render_template(
        "portal/organisation.html", provider=provider, listing=profile.current(provider), requests=requests,
        next_kind=listing_requests.next_listing_kind(provider), open_request=open_request,
        open_request_editable=open_request is not None and listing_requests.may_edit(open_request),
        open_reverification=reverification.of(db.session, open_request) if open_request is not None else None,
        advertising_blocked=advertising.why_not(db.session, provider), action=ActionForm(), error=error,
        labels=profile.value_labels(), zone_form=zone_form or _zone_form(provider),
        shown_zone=formatting.viewer_zone().key.replace("_", " "),
    ), status


@bp.route("/organisations/<int:provider_id>/time-zone", methods=["POST"])
@provider_only
def organisation_time_zone(provider_id: int):
    """A member chooses the time zone the organisation's portal pages show dates in."""
    provider = _own_provider(provider_id)

    def saved(changed: bool):
        flash("The time zone is saved." if changed else "Nothing changed.", "success")
        return redirect(url_for(".organisation", provider_id=provider.id))

    return unit_of_work.submit(
        _zone_form(provider, formdata=True),
        lambda form: time_zones.set_organisation_zone(db.session, current_user, provider, form.time_zone.data),
        done=saved, default_field="time_zone",
        again=lambda form, status: organisation(provider.id, status=status, zone_form=form))


@bp.route("/organisations/<int:provider_id>/requests", methods=["POST"])
@provider_only
def start_request(provider_id: int):
    provider = _own_provider(provider_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    return unit_of_work.perform(
        lambda: listing_requests.start_listing_request(db.session, current_user, provider),
        done=lambda draft: redirect(url_for(".edit_request", submission_id=draft.id)),
        refused=lambda error, status: organisation(provider_id, error=str(error), status=409))


@bp.route("/organisations/<int:provider_id>/advertise", methods=["GET", "POST"])
@provider_only
def advertise(provider_id: int):
    provider = _own_provider(provider_id)

    def applied(application: Submission):
        flash("Your application to advertise is with the research team. Its status is below.", "success")
        return redirect(url_for(".request_page", submission_id=application.id))

    def page(form: AdvertiseForm, status: int = 200, error: str | None = None):
        blocked = advertising.why_not(db.session, provider)
        return render_template("portal/advertise.html", provider=provider, blocked=blocked, error=error,
                               form=form, website_host=advertising_copy.website_host(provider.website),
                               limits=advertising_copy.LIMITS), status

    def refused(form: AdvertiseForm, error: DomainError, status: int):
        # A refusal about one field of the copy is shown beside it; any other (the provider cannot apply
        # now) above the form.
        if error.field and error.field in form:
            unit_of_work.show_beside(form, error)
            return page(form, status)
        return page(form, 409, str(error))

    def again(form: AdvertiseForm, status: int):
        if request.method != "POST":
            return page(form)
        # A post while the provider cannot apply is refused as such, whatever the form holds.
        return page(form, 409 if advertising.why_not(db.session, provider) else status)

    form = AdvertiseForm()
    form.website = provider.website
    return unit_of_work.submit(
        form, lambda form: advertising.apply(db.session, current_user, provider, _policy(), form.copy()),
        done=applied, again=again, refused=refused)


# -- listing requests -----------------------------------------------------------------------------


def _people(submission: Submission) -> dict[int, str]:
    """Names of the provider's own people; staff appear as "the research team", never by name or id."""
    ids = {m.author_id for m in submission.messages}
    members = db.session.scalars(select(Account).join(OrganisationMember).where(
        OrganisationMember.provider_id == submission.provider_id, Account.id.in_(ids))).all()
    return {account.id: account.name for account in members}


def _timeline(submission: Submission) -> list[dict]:
    """Who moved the request on, as its provider reads it: "you", a colleague by name, "the research team"
    (staff are never named to providers) or "the system"."""
    colleagues = {f"user:{account_id}": name for account_id, name in db.session.execute(
        select(Account.id, Account.name).join(OrganisationMember, OrganisationMember.account_id == Account.id)
        .where(OrganisationMember.provider_id == submission.provider_id))}
    me = f"user:{current_user.id}"

    def by(actor: str) -> str:
        if actor == me:
            return "you"
        if actor in colleagues:
            return colleagues[actor] or "a colleague"
        return "the research team" if actor.startswith("user:") else "the system"

    return [{"at": step.at, "state": step.to_state, "by": by(step.actor)} for step in submission.transitions]


def _render_request(submission: Submission, forms: dict | None = None, error: str | None = None,
                    status: int = 200):
    forms = forms or {}
    version = {"version": submission.row_version}
    forms.setdefault("answer", AnswerForm(formdata=None, data=version))
    forms.setdefault("upload", UploadForm(formdata=None))
    decision = review.final_decision(submission)
    return render_template(
        "portal/request.html", submission=submission, provider=submission.provider, forms=forms, error=error,
        timeline=_timeline(submission), people=_people(submission), decision=decision,
        reason_titles=criteria.titles(db.session, decision.catalogue_id, decision.reason_codes) if decision else {},
        labels=profile.value_labels(), can_edit=listing_requests.may_edit(submission),
        can_withdraw=listing_requests.can_withdraw(submission),
        diff=profile.diff(submission.provider, submission.proposed or {})
        if submission.kind in review.CHANGES_LISTING else None,
        reverification=_reverification(submission),
        attestation=(submission.proposed or {}).get(listing_requests.ATTESTATION_KEY),
        ad_copy=advertising_copy.copy_of(db.session, submission),
        max_upload=documents.human_size(current_app.config["UPLOAD_MAX_BYTES"]),
    ), status


def _reverification(submission: Submission) -> dict | None:
    """Why a re-verification request was opened, by when, and what it asks, for its pages."""
    record = reverification.of(db.session, submission)
    if record is None:
        return None
    return {"record": record, "asks": reverification.asks(submission.provider, record)}


@bp.route("/requests/<int:submission_id>")
@provider_only
def request_page(submission_id: int):
    return _render_request(_own_submission(submission_id))


def _listing_form(submission: Submission, formdata: bool) -> ListingForm:
    vocabularies = listing_requests.vocabularies(profile.current(submission.provider))
    if formdata:
        form = ListingForm()
    else:
        form = ListingForm(formdata=None, data={**ListingForm.data_from(submission.proposed or {}),
                                                "version": submission.row_version})
    form.use_vocabularies(vocabularies)
    return form


def _show_missing(form: ListingForm, missing: dict[str, str]) -> None:
    for name, message in missing.items():
        form[name].errors = list(form[name].errors or []) + [message]


@bp.route("/requests/<int:submission_id>/edit", methods=["GET", "POST"])
@provider_only
def edit_request(submission_id: int):
    submission = _own_submission(submission_id)
    if not listing_requests.may_edit(submission):
        flash(f"This request is {submission.state.label}; only a draft listing request can be changed.", "info")
        return redirect(url_for(".request_page", submission_id=submission.id))
    form = _listing_form(submission, formdata=True)
    if not form.is_submitted():
        return _render_edit(submission, _listing_form(submission, formdata=False))

    def save(form: ListingForm) -> None:
        listing_requests.save_draft(db.session, current_user, submission, form.proposed(), _version(form))
        if form.submit_request.data:
            listing_requests.submit(db.session, current_user, submission, form.attestation(), _policy())

    def saved(_):
        if form.submit_request.data:
            flash("Your request is submitted. The research team will answer here; we e-mail you when "
                  "they ask a question or decide.", "success")
            return redirect(url_for(".request_page", submission_id=submission.id))
        flash("Draft saved. Nothing is sent to the research team until you submit.", "success")
        return redirect(url_for(".edit_request", submission_id=submission.id))

    def refused(form: ListingForm, error: DomainError, status: int):
        if isinstance(error, IncompleteRequest):
            _show_missing(form, error.missing)
        return _render_edit(submission, form, str(error), 400)

    return unit_of_work.submit(
        form, save, done=saved, refused=refused,
        again=lambda form, status: _render_edit(submission, form, "Some fields need correcting; nothing was saved. "
                                                "The problems are shown next to each field.", 400))


def _render_edit(submission: Submission, form: ListingForm, error: str | None = None, status: int = 200):
    form.add_blank_rows()
    return render_template("portal/request_edit.html", form=form, submission=submission,
                           provider=submission.provider, error=error, reverification=_reverification(submission),
                           upload=UploadForm(formdata=None),
                           max_upload=documents.human_size(current_app.config["UPLOAD_MAX_BYTES"])), status


def _version(form) -> int | None:
    try:
        return int(form.version.data) if form.version.data not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _store_uploads(submission: Submission, files) -> list[Document]:
    """Store every uploaded file, or raise and store none (the unit of work rolls back)."""
    files = [f for f in files or [] if f and f.filename]
    limit = current_app.config["UPLOAD_MAX_FILES_PER_REQUEST"]
    if len(files) > limit:
        raise documents.UploadRefused(f"Upload at most {limit} files at a time.")
    return [documents.store(db.session, current_user, submission, f.stream, f.filename,
                            current_app.config["UPLOAD_FOLDER"], current_app.config["UPLOAD_MAX_BYTES"])
            for f in files]


def _request_page_again(submission: Submission, key: str):
    """How the request page answers a post of its `key` form that did not go through (`again` and `refused` for
    unit_of_work.submit): the page with the form as typed, a refused file named under the file field, any other
    refusal above the page."""
    def again(form, status: int):
        return _render_request(submission, {key: form}, status=400)

    def refused(form, error: DomainError, status: int):
        if isinstance(error, documents.UploadRefused):
            form.files.errors = [str(error)]
            return again(form, status)
        return _render_request(submission, {key: form}, error=str(error), status=400)

    return again, refused


@bp.route("/requests/<int:submission_id>/documents", methods=["POST"])
@provider_only
def upload(submission_id: int):
    submission = _own_submission(submission_id)

    def store(form) -> str:
        stored = _store_uploads(submission, form.files.data)
        if not stored:
            raise documents.UploadRefused("Choose at least one file to upload.")
        return f"Uploaded {', '.join(d.original_name for d in stored)}."

    def stored(message: str):
        flash(message, "success")
        return redirect(url_for(".request_page", submission_id=submission.id) + "#documents")

    again, refused = _request_page_again(submission, "upload")
    return unit_of_work.submit(UploadForm(), store, done=stored, again=again, refused=refused)


@bp.route("/requests/<int:submission_id>/answer", methods=["POST"])
@provider_only
def answer(submission_id: int):
    submission = _own_submission(submission_id)

    def send(form) -> None:
        # Documents first: they can only be added while the question is open.
        _store_uploads(submission, form.files.data)
        listing_requests.answer(db.session, current_user, submission, form.message.data, form.version.data)

    def sent(_):
        flash("Your answer is sent; the request is back with the research team.", "success")
        return redirect(url_for(".request_page", submission_id=submission.id))

    again, refused = _request_page_again(submission, "answer")
    return unit_of_work.submit(AnswerForm(), send, done=sent, again=again, refused=refused)


@bp.route("/requests/<int:submission_id>/withdraw", methods=["GET", "POST"])
@provider_only
def withdraw(submission_id: int):
    """Two steps: the page says what withdrawing means; only a post of its confirm button withdraws."""
    submission = _own_submission(submission_id)
    form = WithdrawForm() if request.method == "POST" else WithdrawForm(formdata=None)

    def withdrawn(_):
        flash(f"Request #{submission.id} is withdrawn.", "info")
        return redirect(url_for(".request_page", submission_id=submission.id))

    def page(form: WithdrawForm, error: str | None = None):
        # The confirmation acts on the request as this page shows it.
        form.act_on(submission.row_version)
        return render_template(
            "portal/withdraw.html", submission=submission, provider=submission.provider, form=form, error=error,
            blocked=listing_requests.why_not_withdraw(submission),
            stops_advertising=listing_requests.stops_advertising(submission),
        ), 400 if error or form.errors else 200

    if not form.confirm.data:
        return page(form)
    return unit_of_work.submit(
        form, lambda form: listing_requests.withdraw(db.session, current_user, submission, form.reason.data,
                                                     form.version.data),
        done=withdrawn, again=lambda form, status: page(form),
        refused=lambda form, error, status: page(form, str(error)))


# -- documents ------------------------------------------------------------------------------------


@bp.route("/documents/<int:document_id>")
@roles_required(Role.PROVIDER, *documents.EVIDENCE_READERS)
def document(document_id: int):
    return send_document(document_id)

