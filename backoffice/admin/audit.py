"""The auditor's workspace: audit log search, event detail, provider history, export, chain status and the
history of every verification run."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from flask import Response, abort, current_app, flash, redirect, request, stream_with_context, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional, ValidationError

from backoffice import formatting, unit_of_work
from backoffice.admin.base import SecuredView
from backoffice.extensions import db
from backoffice.models import AuditEvent, Provider, Role
from backoffice.services import accounts, audit, audit_export, audit_publish, history


def _as_utc_start(day) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=timezone.utc) if day else None


def _seq_arg(name: str) -> int | None:
    """A sequence number from the query string; anything that is not one is ignored."""
    value = request.args.get(name, type=int)
    return value if value is not None and 0 < value < 2**63 else None


# The jobs that verify the chain, as an auditor would name them.
VERIFYING_JOBS = {
    "system:audit-verification": "the daily verification job",
    "system:cli": "the command line (flask audit verify)",
}


def runner_names(labels: set[str]) -> dict[str, str]:
    """Who ran each verification: a person's name and e-mail, or the job in words."""
    names = accounts.actor_names(db.session, labels)
    return {label: VERIFYING_JOBS.get(label, names[label]) for label in labels}


def chain_status() -> dict:
    """The chain card on the dashboard and the audit pages: the last run and who ran it, the checkpoint, the head."""
    verification = audit.latest_verification(db.session)
    return {"verification": verification, "checkpoint": audit.latest_checkpoint(db.session),
            "head": audit.chain_head(db.session), "published": audit_publish.folder_state(audit_publish.of_app(current_app)),
            "run_by": runner_names({verification.run_by})[verification.run_by] if verification else None}


class LogSearchForm(FlaskForm):
    class Meta:
        csrf = False  # a search reads; it changes nothing

    actor = StringField("Actor (e-mail, user:ID or system:JOB)", validators=[Optional()])
    action = StringField("Action (exact, or a prefix ending in *)", validators=[Optional()])
    entity_type = StringField("Entity type", validators=[Optional()])
    entity_id = StringField("Entity id", validators=[Optional()])
    provider_id = IntegerField("Provider id", validators=[Optional(), NumberRange(min=1, max=2**31 - 1)])
    date_from = DateField("From (UTC date)", validators=[Optional()])
    date_to = DateField("To (UTC date, inclusive)", validators=[Optional()])

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The end date is before the start date.")


class ExportForm(FlaskForm):
    format = RadioField("Format", choices=[SelectChoice("jsonl", "JSON lines"), SelectChoice("csv", "CSV")],
                        default="jsonl")
    provider_id = IntegerField("Provider id (a provider's history)",
                               validators=[Optional(), NumberRange(min=1, max=2**31 - 1)])
    date_from = DateField("From (UTC date)", validators=[Optional()])
    date_to = DateField("To (UTC date, inclusive)", validators=[Optional()])


class AuditLogView(SecuredView):
    """Read-only for everyone: the only write here is the record of an auditor's own export."""

    allowed_roles = frozenset({Role.AUDITOR})

    def _query(self, form: LogSearchForm) -> history.LogQuery | None:
        if not form.validate():
            return None
        actor = (form.actor.data or "").strip() or None
        if actor and "@" in actor:
            account = accounts.find_by_email(db.session, actor)
            if account is None:
                form.actor.errors = list(form.actor.errors) + ["No account has that e-mail address."]
                return None
            actor = f"user:{account.id}"
        elif actor and not history.ACTOR_PATTERN.match(actor):
            form.actor.errors = list(form.actor.errors) + ["Use an e-mail address, user:ID or system:JOB."]
            return None
        end = _as_utc_start(form.date_to.data + timedelta(days=1)) if form.date_to.data else None
        return history.LogQuery(actor=actor, action=(form.action.data or "").strip() or None,
                                entity_type=(form.entity_type.data or "").strip() or None,
                                entity_id=(form.entity_id.data or "").strip() or None,
                                provider_id=form.provider_id.data, start=_as_utc_start(form.date_from.data), end=end)

    @expose("/")
    def index(self):
        form = LogSearchForm(request.args)
        query = self._query(form)
        before = _seq_arg("before")
        page = history.search(db.session, query, before) if query else history.LogPage()
        formatting.know_actors(formatting.event_labels(page.events))
        args = {k: v for k, v in request.args.items() if k != "before"}
        return self.render("admin/audit/log.html", form=form, page=page, args=args,
                           export_form=ExportForm(formdata=None), status=chain_status()), 200 if query else 400

    @expose("/event/<int:seq>")
    def event(self, seq: int):
        event = db.session.get(AuditEvent, seq)
        if event is None:
            abort(404)
        checked = audit.check_event(db.session, event)
        return self.render("admin/audit/event.html", event=event, changes=history.changes(event),
                           intact=checked.intact, linked=checked.linked,
                           has_next=db.session.get(AuditEvent, seq + 1) is not None)

    @expose("/provider/<int:provider_id>")
    def provider(self, provider_id: int):
        provider = db.session.get(Provider, provider_id)
        if provider is None:
            abort(404)
        timeline = history.provider_timeline(db.session, provider.id, _seq_arg("before"))
        formatting.know_actors(formatting.event_labels(i.event for i in timeline.items if i.event))
        return self.render("admin/audit/provider.html", provider=provider, timeline=timeline,
                           basis=history.verification_basis(db.session, provider), status=chain_status(),
                           export_form=ExportForm(formdata=None, provider_id=provider.id))

    @expose("/verify", methods=["GET", "POST"])
    def verify(self):
        """Verify the whole chain now: the run is kept, with who ran it, like the daily one."""
        form = FlaskForm()
        if request.method == "POST":
            if not form.validate_on_submit():
                abort(400)
            with unit_of_work.atomic():
                run, published, refused = audit_publish.verify_and_publish(db.session, current_user,
                                                                           audit_publish.of_app(current_app))
            flash(verification_message(run), "success" if run.ok else "error")
            if run.ok:
                flash(audit_publish.publication_words(published, refused), "success" if refused is None else "error")
            return redirect(url_for("audit_verifications.index"))
        return self.render("admin/audit/verify.html", form=form, status=chain_status())

    @expose("/export", methods=["POST"])
    def export(self):
        form = ExportForm()
        if not form.validate_on_submit():
            abort(400)
        if form.provider_id.data:
            if db.session.get(Provider, form.provider_id.data) is None:
                abort(404)
            selection = audit_export.ExportRange(provider_id=form.provider_id.data)
        else:
            end = _as_utc_start(form.date_to.data + timedelta(days=1)) if form.date_to.data else None
            first, last = audit_export.seq_range_for_dates(db.session, _as_utc_start(form.date_from.data), end)
            selection = audit_export.ExportRange(from_seq=first, to_seq=last)
        fmt = form.format.data
        with unit_of_work.atomic():
            audit_export.record_export(db.session, current_user, fmt, selection)
        lines = (audit_export.jsonl if fmt == "jsonl" else audit_export.csv_lines)(
            db.session, selection, f"user:{current_user.id}")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        name = f"audit-{'provider-%d' % selection.provider_id if selection.provider_id else 'trail'}-{stamp}.{fmt}"
        mimetype = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        return Response(stream_with_context(lines), mimetype=mimetype,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def verification_message(run) -> str:
    """One verification run in words, as the auditor reads it after pressing "verify now"."""
    if run.ok:
        return (f"Verification #{run.id}: OK, {run.checked:,} events verified, through event "
                f"{run.checkpoint.head_seq}; a checkpoint was taken there.")
    where = f" at event {run.broken_seq}" if run.broken_seq is not None else ""
    return (f"Verification #{run.id}: BROKEN{where}: {run.problem} "
            f"({run.checked:,} events before it verified).")


class AuditVerificationView(SecuredView):
    """Every verification run of the chain, newest first: the daily job's, the command line's, the auditors'."""

    allowed_roles = frozenset({Role.AUDITOR})

    @expose("/")
    def index(self):
        before = request.args.get("before", type=int)
        page = audit.verification_runs(db.session, before if before and 0 < before < 2**31 else None)
        return self.render("admin/audit/verifications.html", page=page,
                           names=runner_names({run.run_by for run in page.runs}),
                           existing=audit.existing_seqs(db.session, {r.broken_seq for r in page.runs if r.broken_seq}),
                           form=FlaskForm(), status=chain_status())
