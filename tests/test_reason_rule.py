"""One reason rule and one readers' set: the staff pages and the services take them from one place."""
from __future__ import annotations

import ast
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


READERS = {"RESEARCHER", "RESEARCH_LEAD", "AUDITOR"}


def _roles_named(node) -> set[str] | None:
    """The roles a set literal or a call's arguments name (Role.X, *RESEARCH_ROLES expanded), else None."""
    items = node.elts if isinstance(node, ast.Set) else node.args if isinstance(node, ast.Call) else None
    if not items:
        return None
    named = set()
    for item in items:
        if isinstance(item, ast.Attribute) and getattr(item.value, "id", None) == "Role":
            named.add(item.attr)
        elif isinstance(item, ast.Starred) and getattr(item.value, "id", None) == "RESEARCH_ROLES":
            named |= {"RESEARCHER", "RESEARCH_LEAD"}
        else:
            return None
    return named


def test_the_readers_role_set_is_written_once():
    """Whatever the spelling (the three roles in any order, or RESEARCH_ROLES and the auditor), in a set or as
    the arguments of has_role(): only models/account.py writes it; everything else reads READER_ROLES."""
    found = []
    for path in sorted((ROOT / "backoffice").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "backoffice/models/account.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if _roles_named(node) == READERS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], "use backoffice.models.READER_ROLES:\n" + "\n".join(found)


def test_the_readers_check_catches_each_spelling():
    for source in ("frozenset({Role.AUDITOR, Role.RESEARCHER, Role.RESEARCH_LEAD})",
                   "frozenset({*RESEARCH_ROLES, Role.AUDITOR})", "user.has_role(*RESEARCH_ROLES, Role.AUDITOR)"):
        assert any(_roles_named(node) == READERS for node in ast.walk(ast.parse(source))), source
