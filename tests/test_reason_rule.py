"""One reason rule and one readers' set: the staff pages and the services take them from one place."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from wtforms.validators import Length

from backoffice.admin.forms import ReasonForm
from backoffice.admin.staff import NewStaffForm, RoleForm
from backoffice.services import findings, staff
from backoffice.services.errors import DomainError
from backoffice.services.reasons import REASON_MAX_LENGTH, REASON_MIN_LENGTH

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("form_class", [ReasonForm, NewStaffForm, RoleForm])
def test_every_reason_box_for_the_audit_trail_takes_the_one_rule(app, form_class):
    with app.test_request_context():
        form = form_class(formdata=None)
    (length,) = [v for v in form.reason.validators if isinstance(v, Length)]
    assert (length.min, length.max) == (REASON_MIN_LENGTH, REASON_MAX_LENGTH)


@pytest.mark.parametrize("clean", [staff._reason, findings._reason])
def test_the_services_refuse_a_reason_shorter_than_the_rule_once_stripped(clean):
    with pytest.raises(DomainError) as refused:
        clean("  " + "x" * (REASON_MIN_LENGTH - 1) + "  ")
    assert refused.value.field == "reason"
    assert clean(" " + "x" * REASON_MIN_LENGTH + " ") == "x" * REASON_MIN_LENGTH


def test_the_readers_role_set_is_written_once():
    spelled = re.compile(r"frozenset\(\{\s*Role\.RESEARCHER,\s*Role\.RESEARCH_LEAD,\s*Role\.AUDITOR\s*\}\)")
    found = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "backoffice").rglob("*.py"))
             if spelled.search(path.read_text())]
    assert found == [], "use backoffice.models.READER_ROLES:\n" + "\n".join(found)
