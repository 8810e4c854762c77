"""One commit point: views, tasks and commands end their unit of work through backoffice/unit_of_work.py."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import DataRequired

from backoffice import unit_of_work
from backoffice.models import Provider
from backoffice.services.errors import Conflict, DomainError

ROOT = Path(__file__).resolve().parent.parent
# Where a unit of work ends: these alone may call commit() or rollback() on a session.
OWNERS = {"backoffice/unit_of_work.py"}
AREAS = {
    "staff pages": ["backoffice/admin"],
    "portal, sign-in and the public pages": ["backoffice/portal", "backoffice/auth", "backoffice/api",
                                             "backoffice/ops", "backoffice/downloads.py"],
    "tasks and commands": ["tasks", "backoffice/cli.py", "backoffice/demo.py", "backoffice/dispatch.py",
                           "backoffice/signing_commands.py"],
    "services": ["backoffice/services"],
    "models, checks, importers": ["backoffice/models", "backoffice/checks", "backoffice/importers"],
    "the rest of the package": ["backoffice/auditverify.py", "backoffice/extensions.py", "backoffice/jsonerrors.py",
                                "backoffice/links.py", "backoffice/vocab.py", "backoffice/wsgi.py",
                                "backoffice/zones.py", "backoffice/jws.py", "backoffice/signing.py",
                                "backoffice/receiptverify.py"],
    "the app's wiring and error pages": ["backoffice/__init__.py", "backoffice/txn.py", "backoffice/startup.py",
                                         "backoffice/mail.py", "backoffice/ratelimit.py", "backoffice/formatting.py"],
}


def test_the_areas_cover_every_module():
    """A module added anywhere in backoffice/ or tasks/ is read by the test above, never left out of it."""
    covered = {path for paths in AREAS.values() for path in _sources(paths)}
    every = set((ROOT / "backoffice").rglob("*.py")) | set((ROOT / "tasks").rglob("*.py"))
    left_out = sorted(str(p.relative_to(ROOT)) for p in every - covered if str(p.relative_to(ROOT)) not in OWNERS)
    assert left_out == [], "add these to an area of AREAS:\n" + "\n".join(left_out)


def _sources(paths: list[str]):
    for name in paths:
        path = ROOT / name
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def session_ends(path: Path) -> list[str]:
    """Every `<something>.commit()` / `.rollback()` call in the file, as file:line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("commit", "rollback")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()")
    return found


@pytest.mark.parametrize("area", sorted(AREAS))
def test_only_the_unit_of_work_commits_or_rolls_back(area):
    stray = [hit for path in _sources(AREAS[area]) if str(path.relative_to(ROOT)) not in OWNERS
             for hit in session_ends(path)]
    assert stray == [], f"{area}: commit or roll back through backoffice.unit_of_work, not here:\n" + "\n".join(stray)


class NameForm(FlaskForm):
    class Meta:
        csrf = False

    name = StringField("Name", validators=[DataRequired()])


def _provider(session, name="Harbour Recovery"):
    provider = Provider(legal_name=name, public_name=name)
    session.add(provider)
    return provider


def _names(session) -> list[str]:
    session.rollback()
    return list(session.scalars(select(Provider.legal_name)))


def test_atomic_commits_once_at_the_end_and_rolls_back_what_escapes(app, session):
    with unit_of_work.atomic(session):
        _provider(session, "Kept")
    with pytest.raises(DomainError):
        with unit_of_work.atomic(session):
            _provider(session, "Dropped")
            session.flush()
            raise DomainError("refused")
    assert _names(session) == ["Kept"]


def test_a_form_post_commits_on_success_and_answers_done(app, session):
    with app.test_request_context(method="POST", data={"name": "Harbour"}):
        answer = unit_of_work.submit(NameForm(), lambda form: _provider(session, form.name.data).legal_name,
                                     done=lambda name: f"done {name}", again=lambda form, status: status)
    assert answer == "done Harbour" and _names(session) == ["Harbour"]


def test_a_refused_form_post_changes_nothing_and_shows_the_refusal_beside_its_field(app, session):
    def refuse(form):
        _provider(session, form.name.data)
        session.flush()
        raise DomainError("That name is taken.", field="name")

    with app.test_request_context(method="POST", data={"name": "Harbour"}):
        form = NameForm()
        status = unit_of_work.submit(form, refuse, done=lambda _: "done", again=lambda f, status: status)
        assert status == 400 and form.name.errors == ["That name is taken."] and form.name.data == "Harbour"
    assert _names(session) == []


def test_a_lost_race_answers_409_with_the_message_above_the_form(app, session):
    def lose(form):
        raise Conflict("Someone else changed it first.")

    with app.test_request_context(method="POST", data={"name": "Harbour"}):
        form = NameForm()
        status = unit_of_work.submit(form, lose, done=lambda _: "done", again=lambda f, status: status)
        assert status == 409 and form.form_errors == ["Someone else changed it first."]


def test_an_invalid_form_never_runs_the_action(app, session):
    ran = []
    with app.test_request_context(method="POST", data={"name": ""}):
        form = NameForm()
        status = unit_of_work.submit(form, ran.append, done=lambda _: "done", again=lambda f, status: status)
        assert status == 400 and form.name.errors
    assert ran == []


def test_perform_hands_a_refusal_and_its_status_to_the_page(app, session):
    def refuse():
        _provider(session)
        session.flush()
        raise DomainError("Not now.")

    answer = unit_of_work.perform(refuse, done=lambda _: "done", refused=lambda error, status: (str(error), status),
                                  session=session)
    assert answer == ("Not now.", 400) and _names(session) == []


def test_a_form_post_can_answer_a_refusal_its_own_way_once_everything_is_rolled_back(app, session):
    def refuse(form):
        _provider(session, form.name.data)
        session.flush()
        raise Conflict("Someone else changed it first.", field="name")

    with app.test_request_context(method="POST", data={"name": "Harbour"}):
        form = NameForm()
        answer = unit_of_work.submit(form, refuse, done=lambda _: "done", again=lambda f, status: "again",
                                     refused=lambda f, error, status: (str(error), status, _names(session)))
        assert answer == ("Someone else changed it first.", 409, [])
        # Shown where the page chooses: nothing is added beside the field or above the form.
        assert form.name.errors == [] and form.form_errors == [] and form.name.data == "Harbour"
