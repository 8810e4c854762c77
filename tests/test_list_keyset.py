"""Staff lists in key order page by key: the pager's links carry the key the next (or previous) page starts
after (or before), so a deep page is read from the index; the rows, page numbers and links stay those of the
numbered pages."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import insert

from backoffice.models import CheckKind, CheckOutcome, CheckRun, Role, utcnow
from benchmarks.pages import filter_arg
from tests.conftest import login
from tests.page_text import visible_text

RUNS = 130  # three pages of 50: 50, 50, 30


@pytest.fixture
def reader(client, session, make_account, make_provider):
    provider = make_provider(public_name="Keyset Recovery")
    now = utcnow()
    session.execute(insert(CheckRun), [
        {"provider_id": provider.id, "check": CheckKind.WEBSITE,
         "outcome": CheckOutcome.FAIL if n % 3 == 0 else CheckOutcome.PASS, "summary": f"run number {n}",
         "evidence": {}, "idempotency_key": f"keyset:{n}", "started_at": now, "finished_at": now, "duration_ms": n}
        for n in range(RUNS)])
    session.commit()
    login(client, make_account(Role.RESEARCHER))
    return client


def shown(page: str) -> list[int]:
    """The run numbers a list page shows, in order."""
    return [int(n) for n in re.findall(r"run number (\d+)", visible_text(page))]


def pager(page: str) -> tuple[str, str]:
    """The pager's previous and next links, as the browser follows them."""
    links = re.findall(r'<a class="page-link" href="([^"]+)">', page)
    previous, following = links[-2:]
    return html.unescape(previous), html.unescape(following)


def get(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def test_the_next_and_previous_links_page_by_key_and_show_the_numbered_pages(reader):
    first = get(reader, "/admin/check_runs/")
    assert shown(first) == list(range(129, 79, -1))
    _, following = pager(first)
    assert "page=1" in following and "after=" in following
    second = get(reader, following)
    assert shown(second) == list(range(79, 29, -1))
    assert shown(get(reader, "/admin/check_runs/?page=1")) == shown(second)  # the same rows as by number
    previous, following = pager(second)
    assert "before=" not in previous and "after=" not in previous  # back to the first page: no key needed
    third = get(reader, following)
    assert "page=2" in following and shown(third) == list(range(29, -1, -1))
    assert "130 check runs" in visible_text(third)  # the total on a deep page too
    previous, _ = pager(third)
    assert "page=1" in previous and "before=" in previous
    assert shown(get(reader, previous)) == list(range(79, 29, -1))
    # The last page has no next page: its link is disabled.
    assert '<li class="page-item disabled">\n      <a class="page-link"' in third


def test_a_key_page_keeps_its_filter(app, reader):
    arg = filter_arg(app, "check_runs", "outcome", "pass")
    passed = [n for n in range(RUNS - 1, -1, -1) if n % 3]
    first = get(reader, f"/admin/check_runs/?{arg}")
    assert shown(first) == passed[:50] and "86 check runs" in visible_text(first)
    _, following = pager(first)
    assert arg in following and "after=" in following
    second = get(reader, following)
    assert shown(second) == passed[50:] and "86 check runs" in visible_text(second)


def test_a_cursor_that_is_not_a_number_pages_by_number(reader):
    assert shown(get(reader, "/admin/check_runs/?page=1&after=abc")) == list(range(79, 29, -1))
    assert shown(get(reader, "/admin/check_runs/?page=1&after=-5")) == list(range(79, 29, -1))
    assert shown(get(reader, "/admin/check_runs/?page=1&after=99999999999999999999999")) == list(range(79, 29, -1))


def test_another_sort_pages_by_number(app, reader):
    view = next(v for v in app.extensions["admin"][0]._views if getattr(v, "endpoint", None) == "check_runs")
    by_duration = next(index for index, (name, _) in enumerate(view._list_columns) if name == "duration_ms")
    first = get(reader, f"/admin/check_runs/?sort={by_duration}")
    assert shown(first) == list(range(50))
    _, following = pager(first)
    assert "after=" not in following and "page=1" in following
    assert shown(get(reader, following)) == list(range(50, 100))
    # A key carried into another sort (a link edited by hand) is not used: the numbered page is shown.
    assert shown(get(reader, f"/admin/check_runs/?sort={by_duration}&page=1&after=60")) == list(range(50, 100))

