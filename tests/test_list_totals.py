"""Every staff list says how many rows it holds: exact while counting is cheap, an estimate that says so beyond."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import insert, select, text

from backoffice.models import (
    CheckKind,
    CheckOutcome,
    CheckRun,
    Finding,
    FindingSeverity,
    FindingState,
    ListingStatus,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    utcnow,
)
from backoffice.services import totals
from benchmarks.pages import filter_arg
from tests.conftest import BACKEND, login
from tests.page_text import visible_text


@pytest.mark.parametrize(("total", "words"), [
    (totals.Total(1), "1 provider"),
    (totals.Total(0), "0 providers"),
    (totals.Total(1872), "1,872 providers"),
    (totals.Total(2_043_111, exact=False), "about 2.0 million providers"),
    (totals.Total(123_456, exact=False), "about 120,000 providers"),
    (totals.Total(12_345, exact=False), "about 12,000 providers"),
    (totals.Total(10_000, at_least=True), "more than 10,000 providers"),
])
def test_totals_in_words(total, words):
    assert total.words("provider", "providers") == words


def test_a_list_is_counted_exactly_up_to_the_bound(session, make_provider):
    for _ in range(3):
        make_provider()
    ids = select(Provider.id)
    assert totals.of(session, ids, table="provider", key=Provider.id) == totals.Total(3)
    suspended = select(Provider.id).where(Provider.listing_status == ListingStatus.SUSPENDED)
    assert totals.of(session, suspended) == totals.Total(0)


@pytest.fixture
def many_runs(session, make_provider, monkeypatch):
    """More check runs than the exact bound (lowered for the test), half of them failed."""
    monkeypatch.setattr(totals, "EXACT_UP_TO", 50)
    provider = make_provider()
    now = utcnow()
    session.execute(insert(CheckRun), [
        {"provider_id": provider.id, "check": CheckKind.WEBSITE, "outcome": CheckOutcome.FAIL if n % 2 else CheckOutcome.PASS,
         "summary": "s", "evidence": {}, "idempotency_key": f"k{n}", "started_at": now, "finished_at": now,
         "duration_ms": 1}
        for n in range(400)])
    session.commit()
    if BACKEND == "postgresql":
        session.execute(text("ANALYZE check_run"))
        session.commit()
    return provider


def test_beyond_the_bound_a_whole_table_is_estimated_and_says_about(session, many_runs):
    total = totals.of(session, select(CheckRun.id), table="check_run", key=CheckRun.id)
    assert not total.exact and not total.at_least
    assert 300 <= total.count <= 500  # the statistics (PostgreSQL) or the span of ids (SQLite)
    assert total.words("check run", "check runs").startswith("about ")


def test_beyond_the_bound_a_filtered_list_is_estimated_or_said_to_be_more(session, many_runs):
    failed = select(CheckRun.id).where(CheckRun.outcome == CheckOutcome.FAIL)
    total = totals.of(session, failed)
    if BACKEND == "postgresql":
        assert not total.exact and 100 <= total.count <= 400  # the planner's estimate of the filtered rows
    else:
        assert total == totals.Total(50, at_least=True)
        assert total.words("check run", "check runs") == "more than 50 check runs"


def test_the_staff_lists_show_their_totals_with_filters_and_search(client, session, make_account, make_provider):
    alpine = make_provider(public_name="Alpine Recovery")
    make_provider(public_name="Bayside Counseling", listing_status=ListingStatus.SUSPENDED)
    now = utcnow()
    for n in range(3):
        session.add(CheckRun(provider_id=alpine.id, check=CheckKind.WEBSITE, outcome=CheckOutcome.PASS, summary="ok",
                             evidence={}, idempotency_key=f"total:{n}", started_at=now, finished_at=now, duration_ms=1))
    session.add(Finding(provider_id=alpine.id, check=CheckKind.WEBSITE, subject_key="s", severity=FindingSeverity.INFO,
                        state=FindingState.OPEN, title="A finding"))
    session.add(Submission(provider_id=alpine.id, kind=SubmissionKind.UPDATE, state=SubmissionState.DRAFT, proposed={}))
    session.commit()
    login(client, make_account(Role.RESEARCHER))

    def total(url):
        page = client.get(url)
        assert page.status_code == 200, url
        return re.search(r'id="list-total">([^<]+)<', page.get_data(as_text=True)).group(1)

    assert total("/admin/providers/") == "2 providers"
    assert total("/admin/providers/?search=alpine") == "1 provider"
    assert total("/admin/check_runs/") == "3 check runs"
    assert total("/admin/findings/") == "1 finding"
    assert total("/admin/submissions/") == "1 request"
    assert "2 providers" in visible_text(client.get("/admin/providers/").get_data(as_text=True))


def test_the_total_follows_a_filter(app, client, session, make_account, make_provider):
    make_provider()
    make_provider(listing_status=ListingStatus.SUSPENDED)
    login(client, make_account(Role.RESEARCHER))
    arg = filter_arg(app, "providers", "listing_status", "suspended")  # the list's own filter argument
    page = client.get(f"/admin/providers/?{arg}").get_data(as_text=True)
    assert re.search(r'id="list-total">1 provider<', page)
