"""Criteria changes and their impact: the report on a draft that adds a required criterion and on one that tightens
one lists exactly the affected providers; publishing keeps it with the version and can open one re-review per
provider (idempotent), each told why; leads run and publish, auditors read the kept report."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update

from backoffice.models import (
    Accreditation,
    Assessment,
    AssessmentStatus,
    AuditEvent,
    CatalogueImpact,
    CriteriaCatalogue,
    Criterion,
    DecisionOutcome,
    Licence,
    Notification,
    Provider,
    Reverification,
    ReverificationCause,
    Role,
    Submission,
    SubmissionKind,
    Work,
    WorkKind,
    WorkState,
    utcnow,
)
from backoffice.services import criteria, impact, review, work
from backoffice.services.errors import DomainError
from backoffice.services.review import Evidence
from backoffice.zones import day_text
from tasks.sweeps import open_rereviews
from tests.conftest import login
from tests.page_text import visible_text
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted
from tests.test_catalogue_editor import editor_form, index_of


def listed(session, make_provider, make_account, researcher, name, levels=("outpatient",), accreditation=None,
           accredited_on_file=True, contact_days_ago=0):
    """A provider listed and verified by a research decision under the catalogue in force, with a licence on file;
    ACCREDITATION assessed as `accreditation` (None: never assessed), its CONTACT_CONFIRMED evidence that old."""
    provider = make_provider(public_name=name, legal_name=f"{name} LLC", levels_of_care=list(levels))
    provider.licences.append(Licence(state="VA", number=f"L-{name[:3]}", licence_type="SUD",
                                     expires_on=date.today() + timedelta(days=300)))
    if accredited_on_file:
        provider.accreditations.append(Accreditation(body="CARF", expires_on=date.today() + timedelta(days=300)))
    session.commit()
    member = provider_member(session, make_account, provider)
    submission = in_review(session, researcher, submitted(session, member, provider))
    assess_all(session, researcher, submission, except_codes=("ACCREDITATION",))
    if accreditation is not None:
        review.record_assessment(session, researcher, submission, "ACCREDITATION", accreditation,
                                 Evidence(note="accreditor's register", source="test"), None)
    review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    if contact_days_ago:
        contact = session.scalar(select(Criterion.id).where(Criterion.catalogue_id == submission.catalogue_id,
                                                            Criterion.code == "CONTACT_CONFIRMED"))
        session.execute(update(Assessment).where(Assessment.submission_id == submission.id,
                                                 Assessment.criterion_id == contact)
                        .values(assessed_at=utcnow() - timedelta(days=contact_days_ago)))
        session.commit()
    return session.get(Provider, provider.id), member


def definition_with(session, change=None, added=()):
    definition = criteria.definition_of(criteria.current(session))
    for item in definition["criteria"]:
        (change or {}).get(item["code"], lambda _: None)(item)
    definition["criteria"] += list(added)
    definition["notes"] = "test change"
    return definition


def report_of(report) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    return [(row.provider_name, [(f["code"], f["why"]) for f in row.failing], row.new) for row in report.rows]


INSURANCE = {"code": "INSURANCE_VERIFIED", "title": "Professional liability insurance is current", "required": True,
             "guidance": "Ask for the certificate.", "evidence": "Insurance certificate"}
STAFFING = {"code": "RESIDENTIAL_STAFFING", "title": "Awake overnight staff on every residential site",
            "required": True, "applies_to_levels": ["residential"], "guidance": "Check the rota.", "evidence": "Rota"}
OPTIONAL = {"code": "FAMILY_PROGRAMME", "title": "A family programme is offered", "required": False,
            "guidance": "Ask.", "evidence": "Programme leaflet"}


@pytest.fixture
def world(session, make_provider, make_account):
    publish_catalogue(session)
    researcher = make_account(Role.RESEARCHER)

    def make(*args, **kwargs):
        return listed(session, make_provider, make_account, researcher, *args, **kwargs)

    return make


def test_a_draft_that_adds_required_criteria_names_exactly_the_providers_they_are_new_for(session, world,
                                                                                           make_provider):
    world("Alder House")
    world("Birch Residential", levels=("residential", "outpatient"))
    make_provider(public_name="Cedar Unlisted")  # not listed: not in the report
    draft = criteria.draft(definition_with(session, added=[INSURANCE, STAFFING, OPTIONAL]))
    report = impact.run(session, draft, utcnow())
    assert report.listed == 2
    assert report_of(report) == [
        ("Alder House", [], ["INSURANCE_VERIFIED"]),
        ("Birch Residential", [], ["INSURANCE_VERIFIED", "RESIDENTIAL_STAFFING"]),
    ]
    assert (report.failing, report.new, report.rereviews) == (0, 2, 2)


def test_a_draft_that_tightens_criteria_names_exactly_the_providers_that_would_no_longer_meet_them(session, world):
    met, _ = world("Alder House", accreditation=AssessmentStatus.MET, contact_days_ago=10)
    world("Birch Clinic", accreditation=AssessmentStatus.NOT_MET, accredited_on_file=False)
    world("Cedar Clinic")  # ACCREDITATION never assessed (it was optional), accredited on file
    world("Dogwood Clinic", accreditation=AssessmentStatus.MET)  # meets the tightened criteria: not named

    def required(item):
        item["required"] = True

    def five_days(item):
        item["freshness_days"] = 5

    draft = criteria.draft(definition_with(session, {"ACCREDITATION": required, "CONTACT_CONFIRMED": five_days}))
    report = impact.run(session, draft, utcnow())
    contacted = day_text((utcnow() - timedelta(days=10)).date())
    assert report.listed == 4
    assert report_of(report) == [
        ("Alder House", [("CONTACT_CONFIRMED", f"evidence from {contacted} is older than the new 5-day limit")], []),
        ("Birch Clinic", [("ACCREDITATION", "assessed not met in the decision in force"),
                          ("ACCREDITATION", "no current accreditation on file")], []),
        ("Cedar Clinic", [], ["ACCREDITATION"]),
    ]
    assert (report.failing, report.new, report.rereviews) == (2, 1, 3)


def test_a_criterion_the_draft_leaves_alone_names_nobody_whatever_is_on_file(session, world):
    """The licence criterion was required and found met by the decision in force: a provider whose licence we never
    recorded on file does not "no longer meet" it because the draft made another criterion required."""
    provider, _ = world("Alder House", accreditation=AssessmentStatus.MET, accredited_on_file=False)
    provider.licences.clear()
    session.commit()

    def required(item):
        item["required"] = True

    report = impact.run(session, criteria.draft(definition_with(session, {"ACCREDITATION": required})), utcnow())
    assert report_of(report) == []
    unchanged = impact.run(session, criteria.draft(definition_with(session)), utcnow())
    assert (report_of(unchanged), unchanged.listed) == ([], 1)


def test_scheduling_queues_the_work_and_running_it_opens_one_rereview_per_provider_each_told_why_once(
        session, world, make_account):
    _, alder_member = world("Alder House")
    world("Birch Residential", levels=("residential",))
    lead = make_account(Role.RESEARCH_LEAD)
    in_force = criteria.current(session)
    now = utcnow()
    definition = definition_with(session, added=[INSURANCE])
    report = impact.run(session, criteria.draft(definition), now)
    catalogue = criteria.publish(session, lead, definition, based_on=in_force.version)
    impact.keep(session, lead, catalogue, in_force, report)
    deadline = impact.deadline_from(now.date() + timedelta(days=30), now.date())
    row = impact.schedule(session, lead, catalogue, deadline, work.Policy())
    # Nothing is opened in the publishing transaction: the work is queued, to be sent once it commits.
    assert session.scalar(select(func.count()).select_from(Reverification)) == 0
    assert (row.kind, row.target_id, row.state, row.params) == (WorkKind.REREVIEWS, str(catalogue.id),
                                                                WorkState.REQUESTED, {"by": f"user:{lead.id}"})
    session.commit()

    assert open_rereviews(row.id) == 2
    assert open_rereviews(row.id) == 0  # a second delivery finds the work done
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    # Running the batches again (a worker stopped half-way, the reconciler sent it again) opens nothing twice.
    assert impact.open_rereviews(session, catalogue.id, f"user:{lead.id}", 0, utcnow(), limit=1) is not None
    assert impact.open_rereviews(session, catalogue.id, f"user:{lead.id}", 0, utcnow()) is not None
    session.commit()
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events

    opened = session.scalars(select(Reverification).order_by(Reverification.provider_id)).all()
    assert [(r.cause, r.catalogue_id, r.respond_by) for r in opened] == [
        (ReverificationCause.CRITERIA, catalogue.id, deadline)] * 2
    assert session.scalar(select(func.count()).select_from(Submission).where(
        Submission.kind == SubmissionKind.REVERIFICATION)) == 2
    mail = session.scalar(select(Notification).where(Notification.recipient_email == alder_member.email,
                                                     Notification.kind == "reverification_opened"))
    assert (f"The listing criteria changed: version {catalogue.version} is now in force. New for you: "
            "INSURANCE_VERIFIED (Professional liability insurance is current).") in mail.body
    session.expire_all()
    kept = session.get(CatalogueImpact, catalogue.id)
    assert (kept.affected_providers, kept.rereviews, kept.scheduled, kept.respond_by) == (2, 2, 2, deadline)
    # Each opening is audited in the lead's name, and so is each batch's count kept with the report.
    actions = session.execute(select(AuditEvent.action, AuditEvent.actor).where(
        AuditEvent.action.in_(["reverification.opened", "criteria.rereviews_opened"])).order_by(AuditEvent.seq)).all()
    assert [tuple(a) for a in actions] == [("reverification.opened", f"user:{lead.id}")] * 2 + [
        ("criteria.rereviews_opened", f"user:{lead.id}")]
    assert session.get(Work, row.id).state == WorkState.DONE


@pytest.mark.parametrize("day, message", [
    (None, "Give the day by which the providers must answer."),
    (0, "The deadline must be after today;"),
    (366, "The deadline can be at most 365 days ahead;"),
])
def test_a_bad_deadline_is_refused(day, message):
    today = date.today()
    with pytest.raises(DomainError, match=message):
        impact.deadline_from(None if day is None else today + timedelta(days=day), today)


def set_fields(fields, **values) -> None:
    for name, value in values.items():
        fields[name] = value  # replaces what the page had (a MultiDict's update would add a second value)


def _tightened_editor(client) -> dict:
    page = client.get("/admin/catalogue/next").get_data(as_text=True)
    fields = editor_form(page)
    fields[f"criteria-{index_of(fields, 'ACCREDITATION')}-required"] = "y"
    fields["notes"] = "Accreditation becomes required for every listing."
    return fields


def test_the_lead_runs_the_report_and_publishes_with_rereviews_and_the_auditor_reads_it(
        session, world, client, make_account):
    world("Alder House", accreditation=AssessmentStatus.MET)
    world("Birch Clinic", accreditation=AssessmentStatus.NOT_MET, accredited_on_file=False)
    lead = make_account(Role.RESEARCH_LEAD)
    assert login(client, lead).status_code == 302
    fields = _tightened_editor(client)

    fields["action"] = "impact"
    page = client.post("/admin/catalogue/next", data=fields)
    text = visible_text(page.get_data(as_text=True))
    assert page.status_code == 200
    assert ("Under this draft, 1 of the 2 listed providers would need a re-review: 1 would no longer meet a required "
            "criterion, 0 have required criteria new for them. Publishing can open 1 re-review.") in text
    assert ("Birch Clinic\nACCREDITATION\nCurrent accreditation (e.g. Joint Commission, CARF): assessed not met in "
            "the decision in force\nACCREDITATION\nCurrent accreditation (e.g. Joint Commission, CARF): no current "
            "accreditation on file\nnothing") in text
    assert "Alder House" not in text
    assert session.scalar(select(func.count()).select_from(CriteriaCatalogue)) == 1  # running keeps nothing

    deadline = date.today() + timedelta(days=21)
    set_fields(fields, action="publish", schedule_rereviews="y", rereview_deadline=deadline.isoformat())
    published = client.post("/admin/catalogue/publish", data=fields, follow_redirects=True)
    text = visible_text(published.get_data(as_text=True))
    assert ("Criteria catalogue v2 is published; new reviews use it. Its impact report is kept with it: 1 listed "
            "provider affected. 1 re-review is being opened (none for a provider no longer listed or with another "
            f"request open by then), to be answered by {day_text(deadline)}; this version's page shows how many have "
            "been opened so far.") in text
    assert session.scalar(select(func.count()).select_from(Reverification)) == 0  # not in the request
    assert (f"0 of 1 re-review opened so far, to be answered by {day_text(deadline)}; the rest are being "
            "opened.") in visible_text(client.get("/admin/catalogue/v/2").get_data(as_text=True))
    row = session.scalar(select(Work).where(Work.kind == WorkKind.REREVIEWS))
    session.execute(update(Work).where(Work.id == row.id).values(state=WorkState.FAILED,
                                                                 last_error="the worker stopped"))
    session.commit()
    assert (f"0 of 1 re-review opened, to be answered by {day_text(deadline)}; opening the rest stopped (the worker "
            "stopped) and can be sent again from the work page.") in visible_text(
                client.get("/admin/catalogue/v/2").get_data(as_text=True))
    work.retry(session, lead, session.get(Work, row.id), work.Policy())
    session.commit()
    assert open_rereviews(row.id) == 1
    reverification = session.scalar(select(Reverification))
    assert reverification.reason.startswith("The listing criteria changed: version 2 is now in force. Your listing "
                                            "would no longer meet: ACCREDITATION (Current accreditation")

    # Publishing the same draft again is refused and changes nothing.
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    again = client.post("/admin/catalogue/publish", data=fields)
    assert again.status_code == 409
    assert "v2 was published while this draft was edited from v1" in visible_text(again.get_data(as_text=True))
    assert session.scalar(select(func.count()).select_from(CriteriaCatalogue)) == 2
    assert session.scalar(select(func.count()).select_from(Reverification)) == 1
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events

    client.get("/logout")
    auditor = make_account(Role.AUDITOR)
    assert login(client, auditor).status_code == 302
    version = visible_text(client.get("/admin/catalogue/v/2").get_data(as_text=True))
    assert "Impact report" in version
    assert f"Run by {lead.name} <{lead.email}> on " in version
    assert (f"when v2 was published, against v1: 1 of the 2 listed providers affected; 1 re-review could be opened. "
            f"1 re-review opened, to be answered by {day_text(deadline)}.") in version
    assert "Birch Clinic" in version and "assessed not met in the decision in force" in version
    first = visible_text(client.get("/admin/catalogue/v/1").get_data(as_text=True))
    assert "No impact report was kept with this version" in first
    # An auditor reads; running or publishing is a lead's.
    assert client.post("/admin/catalogue/next", data={**fields, "action": "impact"}).status_code == 403
    assert client.post("/admin/catalogue/publish", data=fields).status_code == 403


def test_a_bad_deadline_or_a_non_lead_publishes_nothing(session, world, client, make_account):
    world("Birch Clinic", accreditation=AssessmentStatus.NOT_MET, accredited_on_file=False)
    lead = make_account(Role.RESEARCH_LEAD)
    assert login(client, lead).status_code == 302
    fields = _tightened_editor(client)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    for bad, message in ((date.today().isoformat(), "The deadline must be after today;"),
                         ("soon", "Not a valid date value.")):
        set_fields(fields, action="publish", schedule_rereviews="y", rereview_deadline=bad)
        refused = client.post("/admin/catalogue/publish", data=fields)
        assert refused.status_code == 400
        assert message in visible_text(refused.get_data(as_text=True))
    assert session.scalar(select(func.count()).select_from(CriteriaCatalogue)) == 1
    assert session.scalar(select(func.count()).select_from(Reverification)) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events

    client.get("/logout")
    researcher = make_account(Role.RESEARCHER)
    assert login(client, researcher).status_code == 302
    fields["rereview_deadline"] = (date.today() + timedelta(days=10)).isoformat()
    assert client.post("/admin/catalogue/publish", data=fields).status_code == 403
    assert client.post("/admin/catalogue/next", data={**fields, "action": "impact"}).status_code == 403
    assert session.scalar(select(func.count()).select_from(CriteriaCatalogue)) == 1
    assert session.scalar(select(func.count()).select_from(Reverification)) == 0


def test_publishing_with_rereviews_that_the_report_names_nobody_for_says_so_and_queues_nothing(
        session, world, client, make_account):
    world("Alder House", accreditation=AssessmentStatus.MET)
    lead = make_account(Role.RESEARCH_LEAD)
    assert login(client, lead).status_code == 302
    fields = _tightened_editor(client)
    set_fields(fields, action="publish", schedule_rereviews="y",
               rereview_deadline=(date.today() + timedelta(days=21)).isoformat())
    text = visible_text(client.post("/admin/catalogue/publish", data=fields, follow_redirects=True)
                        .get_data(as_text=True))
    assert ("Its impact report is kept with it: 0 listed providers affected. The impact report names no provider to "
            "re-review, so none is opened.") in text
    assert "being opened" not in text and "No re-review was scheduled." in text
    assert session.scalar(select(func.count()).select_from(Work).where(Work.kind == WorkKind.REREVIEWS)) == 0


def test_a_stopped_opening_keeps_its_error_for_the_version_page_until_it_is_sent_again(
        session, world, make_account, client, monkeypatch):
    world("Alder House")
    lead = make_account(Role.RESEARCH_LEAD)
    in_force, now = criteria.current(session), utcnow()
    definition = definition_with(session, added=[INSURANCE])
    catalogue = criteria.publish(session, lead, definition, based_on=in_force.version)
    impact.keep(session, lead, catalogue, in_force, impact.run(session, criteria.draft(definition), now))
    row = impact.schedule(session, lead, catalogue, impact.deadline_from(now.date() + timedelta(days=30), now.date()),
                          work.Policy())
    session.commit()

    def stops(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(impact, "open_rereviews", stops)
    with pytest.raises(RuntimeError):
        open_rereviews(row.id)
    session.expire_all()
    stopped = session.get(Work, row.id)
    assert (stopped.state, stopped.last_error) == (WorkState.RUNNING, "RuntimeError: the database went away")
    assert login(client, lead).status_code == 302
    text = visible_text(client.get(f"/admin/catalogue/v/{catalogue.version}").get_data(as_text=True))
    assert ("the rest are being opened. The last attempt stopped (RuntimeError: the database went away); it is "
            "tried again once its lease runs out.") in text
