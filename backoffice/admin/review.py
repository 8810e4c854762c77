"""Review workflow pages: the queue, the case page and its actions, each calling the review service."""
from __future__ import annotations

from types import SimpleNamespace

from flask import abort, current_app, flash, request, url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms.fields.choices import SelectChoice

from backoffice import formatting, unit_of_work
from backoffice.admin.base import SecuredView, flash_and_redirect, only
from backoffice.admin.forms import ReasonForm
from backoffice.admin.refusals import EXPIRED, LOST_VERSION, Refusal, refusal_of
from backoffice.admin.review_forms import (
    AssessmentItemForm,
    AssessmentsForm,
    AssignForm,
    BulkAssignForm,
    ClaimForm,
    DecisionForm,
    DeclineForm,
    RequestInfoForm,
    SignOffForm,
    assessment_item_name,
)
from backoffice.downloads import send_document
from backoffice.extensions import db
from backoffice.models import (
    OPEN_FINDING_STATES,
    READER_ROLES,
    RESEARCH_ROLES,
    Account,
    AccountRole,
    AssessmentStatus,
    CheckRun,
    DecisionOutcome,
    Document,
    Finding,
    FindingSeverity,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    VerificationAction,
    utcnow,
)
from backoffice.services import advertising, advertising_copy, profile, queue, rechecks, reverification, review, sources
from backoffice.services.errors import DomainError
from backoffice.services.review import AssessmentInput, AssessmentRefused, Evidence, ReviewPolicy
from backoffice.vocab import US_STATES


def policy() -> ReviewPolicy:
    return ReviewPolicy.from_config(current_app.config)


class ReviewView(SecuredView):
    allowed_roles = READER_ROLES

    # -- queue ------------------------------------------------------------------------------------

    @expose("/")
    def index(self, bulk: BulkAssignForm | None = None, status: int = 200):
        filters, problems = self._filters()
        try:
            result = queue.page(db.session, filters, current_user.id, utcnow(), request.args.get("cursor"))
        except queue.BadCursor as exc:
            problems.append(f"{exc} Showing the first page.")
            result = queue.page(db.session, filters, current_user.id, utcnow())
        for problem in problems:
            flash(problem, "warning")
        args = {k: v for k, v in request.args.items() if k != "cursor"}
        views = {key: label for key, label in queue.VIEWS.items()
                 if key != "signoff" or current_user.has_role(Role.RESEARCH_LEAD)}
        can_assign = current_user.has_role(Role.RESEARCH_LEAD) and bool(result.rows)
        if can_assign and bulk is None:
            bulk = BulkAssignForm(formdata=None)
            bulk.assignee.choices = self._researchers()
        return self.render("admin/review/queue.html", page=result, filters=filters, args=args, now=utcnow(),
                           states=sorted(US_STATES), kinds=list(SubmissionKind), views=views, sorts=queue.SORTS,
                           bulk=bulk if can_assign else None, ticked=set(bulk.ids.data or []) if bulk else set(),
                           refusal=refusal_of(bulk, "Nothing was assigned", "bulk-assign",
                                             lambda name: name if name == "ids" else f"bulk-{name}")
                           if bulk else None), status

    @expose("/bulk-assign", methods=["POST"])
    @only(Role.RESEARCH_LEAD)
    def bulk_assign(self):
        """Assign the ticked requests to one researcher, with a reason: all of them or none."""
        form = BulkAssignForm()
        form.assignee.choices = self._researchers()

        def do(f):
            assignee = db.session.get(Account, f.assignee.data)
            if assignee is None:
                raise DomainError("Choose a researcher.", field="assignee")
            chosen = list(db.session.scalars(select(Submission).where(Submission.id.in_(f.ids.data))))
            missing = sorted(set(f.ids.data) - {s.id for s in chosen})
            if missing:
                raise DomainError(f"Request #{missing[0]} does not exist. Nothing was assigned.", field="ids")
            return assignee, len(chosen), review.assign_many(db.session, current_user, chosen, assignee, f.reason.data)

        def done(result):
            assignee, chosen, changed = result
            word = "request" if chosen == 1 else "requests"
            kept = f" ({chosen - changed} already were)" if changed != chosen else ""
            return flash_and_redirect(f"{chosen} {word} assigned to {assignee.name}{kept}.",
                                      url_for(".index", **request.args))

        return unit_of_work.submit(form, do, done=done, again=lambda f, status: self.index(f, status),
                                   default_field="ids")

    def _filters(self) -> tuple[queue.QueueFilters, list[str]]:
        problems = []
        state = (request.args.get("state") or "").upper() or None
        if state and state not in US_STATES:
            problems.append(f"{state!r} is not a US state code; the state filter was ignored.")
            state = None
        kind = request.args.get("kind") or None
        if kind:
            try:
                kind = SubmissionKind(kind)
            except ValueError:
                problems.append(f"{kind!r} is not a kind of request; the kind filter was ignored.")
                kind = None
        assignee = request.args.get("assignee") or None
        if assignee not in (None, "mine", "unassigned"):
            problems.append("The assignee filter takes 'mine' or 'unassigned'; it was ignored.")
            assignee = None
        view = request.args.get("view") or None
        if view not in (None, *queue.VIEWS):
            problems.append(f"{view!r} is not a saved filter; showing every open request.")
            view = None
        elif view == "signoff" and not current_user.has_role(Role.RESEARCH_LEAD):
            problems.append("Only research leads sign off decisions; showing every open request.")
            view = None
        sort = request.args.get("sort") or "due"
        if sort not in queue.SORTS:
            problems.append(f"{sort!r} is not a way to sort the queue; sorted by decision due.")
            sort = "due"
        search = " ".join((request.args.get("q") or "").split()) or None
        if search and len(search) > queue.SEARCH_MAX_LENGTH:
            problems.append(f"The search is longer than {queue.SEARCH_MAX_LENGTH} characters; it was ignored.")
            search = None
        return queue.QueueFilters(state=state, kind=kind, assignee=assignee,
                                  overdue=request.args.get("overdue") == "1", search=search, view=view,
                                  sort=sort), problems

    # -- case page --------------------------------------------------------------------------------

    def _submission(self, submission_id: int) -> Submission:
        submission = db.session.get(Submission, submission_id, options=[
            selectinload(Submission.assessments), selectinload(Submission.decisions),
            selectinload(Submission.messages), selectinload(Submission.documents),
            selectinload(Submission.transitions)])
        if submission is None:
            abort(404)
        return submission

    @expose("/case/<int:submission_id>")
    def case(self, submission_id: int):
        return self._render_case(self._submission(submission_id))

    def _render_case(self, submission: Submission, bound: dict | None = None, status: int = 200,
                     refusal: Refusal | None = None):
        bound = bound or {}
        provider = submission.provider
        criteria_list = review.applicable_criteria(db.session, submission)
        assessed = review.assessments_by_code(submission)
        documents = self._documents(provider.id)
        runs = self._latest_runs(provider.id)
        version = submission.row_version

        def versioned(form_cls, **data):
            return form_cls(formdata=None, version=version, **data)

        assess_form = bound.get("assess") or self._assessments_form(criteria_list, assessed, version)
        for _, item in assess_form.items():
            self._evidence_choices(item, documents, runs)
        decision_form = bound.get("decide") or versioned(DecisionForm)
        decision_form.reason_codes.choices = self._reason_choices(submission)
        assign_form = bound.get("assign") or versioned(AssignForm, assignee=submission.assignee_id)
        assign_form.assignee.choices = self._researchers()
        findings = db.session.scalars(select(Finding).where(
            Finding.provider_id == provider.id, Finding.state.in_(OPEN_FINDING_STATES))
            .order_by(Finding.severity.desc(), Finding.id)).all()
        diff = profile.diff(provider, submission.proposed or {})
        pending = review.pending_decision(submission)
        can_act = current_user.has_role(*RESEARCH_ROLES)
        is_lead = current_user.has_role(Role.RESEARCH_LEAD)
        now = utcnow()
        carried = {code: a for code, a in assessed.items() if review.is_unconfirmed(a)}
        return self.render(
            "admin/review/case.html", submission=submission, provider=provider,
            diff=diff, changed=[row["label"] for row in diff if row["changed"]], labels=profile.value_labels(),
            criteria=criteria_list, assessed=assessed,
            required={c.code: review.is_required(c, submission) for c in criteria_list},
            blockers=review.approval_blockers(db.session, submission) if criteria_list else [],
            in_words=review.blockers_in_words(db.session, submission),
            optional_not_met=review.optional_not_met_codes(db.session, submission),
            pending=pending, final=review.final_decision(submission),
            documents=documents, runs=runs, findings=findings, worst=self._worst(findings),
            run_sources=sources.of_run, confirmed=sources.confirmations(db.session, [provider.id])[provider.id],
            ad_copy=advertising_copy.copy_of(db.session, submission),
            standards_problems=advertising_copy.standards_problems(db.session, submission),
            carried=carried, origins={code: review.final_decision(a.carried_from.submission)
                                      for code, a in carried.items() if a.carried_from is not None},
            stale={code for code, a in assessed.items() if review.is_stale(a, now)},
            evidence_date=review.evidence_date,
            forms={
                "claim": bound.get("claim") or versioned(ClaimForm), "assign": assign_form, "assess": assess_form,
                "request_info": bound.get("request_info") or versioned(RequestInfoForm),
                "decide": decision_form, "sign_off": bound.get("sign_off") or versioned(SignOffForm),
                "decline": bound.get("decline") or versioned(DeclineForm),
            },
            actions=self._actions(submission, pending, can_act, is_lead),
            can_act=can_act, is_lead=is_lead,
            accounts=self._accounts(submission),
            refusal=refusal or self._refusal(bound),
            reverification=reverification.of(db.session, submission),
            now=now,
        ), status

    @staticmethod
    def _documents(provider_id: int) -> list[Document]:
        return list(db.session.scalars(select(Document).where(Document.provider_id == provider_id)
                                       .order_by(Document.id.desc()).limit(100)))

    @staticmethod
    def _assessments_form(criteria_list, assessed: dict, version: int | None) -> AssessmentsForm:
        """The one form that assesses every applicable criterion, each item starting from its assessment."""
        items = {}
        for criterion in criteria_list:
            current = assessed.get(criterion.code)
            items[assessment_item_name(criterion.code)] = SimpleNamespace(
                status=(current.status.value if current else AssessmentStatus.PENDING.value),
                **{name: getattr(current, name) if current else None
                   for name in ("note", "source", "url", "document_id", "check_run_id")},
                confirm=False)
        return AssessmentsForm.of([c.code for c in criteria_list], formdata=None, version=version, **items)

    @staticmethod
    def _worst(findings: list[Finding]) -> FindingSeverity | None:
        order = list(FindingSeverity)
        return max((f.severity for f in findings), key=order.index, default=None)

    @staticmethod
    def _actions(submission: Submission, pending, can_act: bool, is_lead: bool) -> set[str]:
        """What the person can do to this request now, as the summary offers it."""
        if not can_act:
            return set()
        state = submission.state.value
        mine = submission.assignee_id == current_user.id
        actions = set()
        if state in ("submitted", "in_review", "needs_info"):
            if not mine:
                actions.add("claim")
            if is_lead:
                actions.add("assign")
        if state == "in_review" and not pending and (mine or is_lead):
            actions |= {"assess", "ask", "decide"}
        if pending is not None and pending.decided_by_id != current_user.id:
            actions |= {"sign_off", "decline"}
        return actions

    # What each case-page form does, as its refusal banner says it was not done, and the id of the form.
    CASE_FORMS = {
        "claim": ("The request was not claimed", "claim-form"),
        "assign": ("The request was not assigned", "assign-form"),
        "request_info": ("The question was not sent", "request-info"),
        "decide": ("The decision was not recorded", "decide-form"),
        "sign_off": ("The decision was not signed off", "decision"),
        "decline": ("The sign-off was not declined", "decline-form"),
    }

    @classmethod
    def _refusal(cls, bound: dict) -> Refusal | None:
        for key, form in bound.items():
            if key == "assess":
                found = cls._assessment_refusal(form)
            elif key == "assign":  # its field is named apart from the assignee shown in the heading
                found = refusal_of(form, *cls.CASE_FORMS[key], lambda name: f"assign-{name}")
            else:
                found = refusal_of(form, *cls.CASE_FORMS[key])
            if found:
                return found
        return None

    @staticmethod
    def _assessment_refusal(form: AssessmentsForm) -> Refusal | None:
        """The banner of a refused assessment form: each item in error named by its criterion, the link and the
        focus on the first field in error."""
        problems, focus, first = list(form.form_errors), None, None
        if form.version.errors:
            problems.append(LOST_VERSION)
        csrf = getattr(form, "csrf_token", None)
        if csrf is not None and csrf.errors:
            problems.append(EXPIRED)
        for code, item in form.items():
            for field in item:
                for error in field.errors:
                    problems.append(f"{code}, {field.label.text}: {error}")
                    first = first or code
                    focus = focus or field.id
        if not problems:
            return None
        what = f"Nothing was assessed: {first} was refused" if first else "Nothing was assessed"
        return Refusal(what=what, problems=problems, target=focus or "assess-form", focus=focus)

    @staticmethod
    def _accounts(submission: Submission) -> dict[int, Account]:
        """Everyone the case page names, loaded in one query."""
        ids = {submission.assignee_id} | {m.author_id for m in submission.messages}
        for d in submission.decisions:
            ids |= {d.decided_by_id, d.second_signoff_by_id, d.declined_by_id}
        ids.discard(None)
        return {a.id: a for a in db.session.scalars(select(Account).where(Account.id.in_(ids)))}

    @staticmethod
    def _latest_runs(provider_id: int) -> list[CheckRun]:
        """The latest run of each check, in the order of the checks."""
        return list(rechecks.latest_runs(db.session, provider_id).values())

    @staticmethod
    def _evidence_choices(form: AssessmentItemForm, documents, runs) -> None:
        form.document_id.choices = [SelectChoice("", "—")] + [
            SelectChoice(str(d.id), f"{d.original_name} ({d.sha256[:12]}…)") for d in documents]
        form.check_run_id.choices = [SelectChoice("", "—")] + [
            SelectChoice(str(r.id), f"{r.check.label}: {r.outcome.label} on {formatting.day(r.started_at)}") for r in runs]

    @staticmethod
    def _reason_choices(submission: Submission) -> list[SelectChoice]:
        """Only what the service accepts: required criteria assessed not met (never an optional one)."""
        return [SelectChoice(code) for code in review.rejection_reason_codes(db.session, submission)]

    def _researchers(self) -> list[tuple[int, str]]:
        accounts = db.session.scalars(
            select(Account).join(AccountRole, AccountRole.account_id == Account.id)
            .where(AccountRole.role.in_(RESEARCH_ROLES), Account.is_active.is_(True))
            .order_by(Account.name)).unique().all()
        return [SelectChoice(str(a.id), f"{a.name} <{a.email}>") for a in accounts]

    # -- actions ----------------------------------------------------------------------------------

    def _case_again(self, submission_id: int, key):
        """The case page again (read afresh) with the refused form as sent: a banner names the problem and the
        error stands beside the form."""
        return lambda form, status: self._render_case(self._submission(submission_id), {key: form}, status)

    @staticmethod
    def _case_done(submission_id: int, success: str, anchor: str = ""):
        return lambda _: flash_and_redirect(success, url_for(".case", submission_id=submission_id) + anchor)

    @expose("/case/<int:submission_id>/claim", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def claim(self, submission_id: int):
        submission = self._submission(submission_id)
        return unit_of_work.submit(
            ClaimForm(), lambda f: review.claim(db.session, current_user, submission, f.version.data),
            done=self._case_done(submission_id, "The request is yours."),
            again=self._case_again(submission_id, "claim"))

    @expose("/case/<int:submission_id>/assign", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def assign(self, submission_id: int):
        submission = self._submission(submission_id)
        form = AssignForm()
        form.assignee.choices = self._researchers()

        def do(f):
            assignee = db.session.get(Account, f.assignee.data)
            if assignee is None:
                raise DomainError("Choose a researcher.")
            review.assign(db.session, current_user, submission, assignee, f.version.data)

        return unit_of_work.submit(form, do, done=self._case_done(submission_id, "Assigned."),
                                   again=self._case_again(submission_id, "assign"))

    @expose("/case/<int:submission_id>/assess", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def assess(self, submission_id: int):
        """Every criterion of the request in one post: the changed ones recorded, the ticked carried-over ones
        confirmed, all in one transaction; one refused item refuses the post and keeps everything typed."""
        submission = self._submission(submission_id)
        criteria_list = review.applicable_criteria(db.session, submission)
        form = AssessmentsForm.of([c.code for c in criteria_list])
        documents, runs = self._documents(submission.provider_id), self._latest_runs(submission.provider_id)
        for _, item in form.items():
            self._evidence_choices(item, documents, runs)

        def do(f: AssessmentsForm) -> list[str]:
            return review.record_assessments(db.session, current_user, submission, [
                AssessmentInput(code, AssessmentStatus(item.status.data),
                                Evidence(note=item.note.data, source=item.source.data, url=item.url.data,
                                         document_id=item.document_id.data, check_run_id=item.check_run_id.data),
                                confirm=bool(item.confirm.data))
                for code, item in f.items()], f.version.data)

        def again(f: AssessmentsForm, status: int):
            return self._render_case(self._submission(submission_id), {"assess": f}, status)

        def refused(f: AssessmentsForm, error, status: int):
            if isinstance(error, AssessmentRefused) and error.code in f.codes:
                item = f.item(error.code)
                field = getattr(item, error.field or "status", None) or item.status
                field.errors = [*field.errors, str(error)]
            else:
                f.form_errors.append(str(error))
            return again(f, status)

        def done(codes: list[str]):
            if not codes:
                message = "No assessment was changed."
            else:
                message = f"{len(codes)} {'criterion' if len(codes) == 1 else 'criteria'} assessed: {', '.join(codes)}."
            return flash_and_redirect(message, url_for(".case", submission_id=submission_id) + "#summary")

        return unit_of_work.submit(form, do, done=done, again=again, refused=refused)

    @expose("/case/<int:submission_id>/request-info", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def request_info(self, submission_id: int):
        submission = self._submission(submission_id)
        return unit_of_work.submit(
            RequestInfoForm(),
            lambda f: review.request_info(db.session, current_user, submission, f.message.data, f.version.data),
            done=self._case_done(submission_id, "The question is sent; the request waits for the provider's answer."),
            again=self._case_again(submission_id, "request_info"))

    @expose("/case/<int:submission_id>/decide", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def decide(self, submission_id: int):
        submission = self._submission(submission_id)
        form = DecisionForm()
        form.reason_codes.choices = self._reason_choices(submission)

        def do(f):
            review.decide(db.session, current_user, submission, DecisionOutcome(f.outcome.data),
                          f.reason_codes.data or [], f.provider_note.data, f.internal_note.data, policy(),
                          f.version.data)

        return unit_of_work.submit(form, do, done=self._case_done(submission_id, "Decision recorded.", "#decision"),
                                   again=self._case_again(submission_id, "decide"))

    @expose("/case/<int:submission_id>/sign-off", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def sign_off(self, submission_id: int):
        submission = self._submission(submission_id)
        return unit_of_work.submit(
            SignOffForm(), lambda f: review.sign_off(db.session, current_user, submission, policy(), f.version.data),
            done=self._case_done(submission_id, "Signed off: the decision has taken effect.", "#decision"),
            again=self._case_again(submission_id, "sign_off"))

    @expose("/case/<int:submission_id>/decline-signoff", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def decline_signoff(self, submission_id: int):
        submission = self._submission(submission_id)
        return unit_of_work.submit(
            DeclineForm(),
            lambda f: review.decline_signoff(db.session, current_user, submission, f.reason.data, f.version.data),
            done=self._case_done(submission_id, "Sign-off declined; the request is back in review.", "#decision"),
            again=self._case_again(submission_id, "decline"))

    @expose("/documents/<int:document_id>")
    def document(self, document_id: int):
        return send_document(document_id)

    # -- provider verification --------------------------------------------------------------------

    def _provider(self, provider_id: int) -> Provider:
        provider = db.session.get(Provider, provider_id)
        if provider is None:
            abort(404)
        return provider

    # What each provider-page form does, as its refusal banner says it was not done, and the id of the form.
    PROVIDER_FORMS = {
        "suspend": ("The listing was not suspended", "suspend-form"),
        "revoke": ("The revocation was not asked for", "revoke-form"),
        "reinstate": ("No reinstatement review was opened", "reinstate-form"),
        "suspend_advertising": ("Advertising was not suspended", "suspend-advertising-form"),
        "end_advertising": ("Advertising was not ended", "end-advertising-form"),
        "decline_revocation": ("The revocation was not declined", "decline-revocation-form"),
    }

    @expose("/provider/<int:provider_id>")
    def provider(self, provider_id: int, forms: dict | None = None, status: int = 200,
                 refusal: Refusal | None = None):
        provider = self._provider(provider_id)
        forms = forms or {}
        for key, form in forms.items():
            what, form_id = self.PROVIDER_FORMS[key]
            refusal = refusal or refusal_of(form, what, form_id, lambda name, form_id=form_id: f"{form_id}-{name}")
        actions = db.session.scalars(select(VerificationAction).where(VerificationAction.provider_id == provider.id)
                                     .order_by(VerificationAction.id.desc())).all()
        submissions = db.session.scalars(select(Submission).where(Submission.provider_id == provider.id)
                                         .order_by(Submission.id.desc()).limit(50)).all()
        return self.render(
            "admin/review/provider.html", provider=provider, actions=actions, submissions=submissions,
            forms={name: forms.get(name) or ReasonForm(formdata=None) for name in
                   ("suspend", "revoke", "reinstate", "decline_revocation", "suspend_advertising",
                    "end_advertising")},
            can_act=current_user.has_role(*RESEARCH_ROLES), now=utcnow(), refusal=refusal,
        ), status

    def _provider_again(self, provider_id: int, key: str):
        """The provider page again with the refused form as sent, the refusal beside its reason; these pages
        answer 400 for every refusal, a lost race included."""
        return lambda form, status: self.provider(provider_id, {key: form}, 400)

    @staticmethod
    def _provider_done(provider_id: int, success: str):
        """The provider page, or the case a reinstatement opened."""
        def done(result):
            if isinstance(result, Submission):
                return flash_and_redirect(success, url_for(".case", submission_id=result.id))
            return flash_and_redirect(success, url_for(".provider", provider_id=provider_id))
        return done

    @expose("/provider/<int:provider_id>/suspend", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def suspend(self, provider_id: int):
        provider = self._provider(provider_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: review.suspend_listing(db.session, current_user, provider, f.reason.data),
            default_field="reason", again=self._provider_again(provider_id, "suspend"),
            done=self._provider_done(provider_id, "The listing is suspended and its advertising with it."))

    @expose("/provider/<int:provider_id>/revoke", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def revoke(self, provider_id: int):
        provider = self._provider(provider_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: review.request_revocation(db.session, current_user, provider, f.reason.data),
            default_field="reason", again=self._provider_again(provider_id, "revoke"),
            done=self._provider_done(provider_id, "Revocation requested: another researcher must sign it off."))

    @expose("/provider/<int:provider_id>/reinstate", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def reinstate(self, provider_id: int):
        provider = self._provider(provider_id)
        return unit_of_work.submit(
            ReasonForm(),
            lambda f: review.open_reinstatement(db.session, current_user, provider, policy(), f.reason.data),
            default_field="reason", again=self._provider_again(provider_id, "reinstate"),
            done=self._provider_done(provider_id, "A reinstatement review is open."))

    @expose("/provider/<int:provider_id>/advertising/suspend", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def suspend_advertising(self, provider_id: int):
        provider = self._provider(provider_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: advertising.suspend(db.session, current_user, provider, f.reason.data),
            default_field="reason", again=self._provider_again(provider_id, "suspend_advertising"),
            done=self._provider_done(provider_id, "Advertising is suspended; it resumes only through a new "
                                     "advertiser review."))

    @expose("/provider/<int:provider_id>/advertising/end", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def end_advertising(self, provider_id: int):
        provider = self._provider(provider_id)
        return unit_of_work.submit(
            ReasonForm(), lambda f: advertising.end(db.session, current_user, provider, f.reason.data),
            default_field="reason", again=self._provider_again(provider_id, "end_advertising"),
            done=self._provider_done(provider_id, "Advertising has ended."))

    def _action(self, action_id: int) -> VerificationAction:
        action = db.session.get(VerificationAction, action_id)
        if action is None:
            abort(404)
        return action

    @expose("/revocations/<int:action_id>/sign-off", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def sign_off_revocation(self, action_id: int):
        action = self._action(action_id)
        provider_id = action.provider_id
        return unit_of_work.perform(
            lambda: review.sign_off_revocation(db.session, current_user, action),
            done=lambda _: flash_and_redirect("Revocation signed off: verification revoked, listing and advertising "
                                              "ended.", url_for(".provider", provider_id=provider_id)),
            refused=lambda exc, status: self.provider(
                provider_id, None, 400, Refusal("The revocation was not signed off", [str(exc)], "revocations")))

    @expose("/revocations/<int:action_id>/decline", methods=["POST"])
    @only(*RESEARCH_ROLES)
    def decline_revocation(self, action_id: int):
        action = self._action(action_id)
        provider_id = self._provider(action.provider_id).id
        return unit_of_work.submit(
            ReasonForm(), lambda f: review.decline_revocation(db.session, current_user, action, f.reason.data),
            default_field="reason", again=self._provider_again(provider_id, "decline_revocation"),
            done=self._provider_done(provider_id, "Revocation declined."))
