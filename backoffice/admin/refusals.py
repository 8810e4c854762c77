"""A refused action, shown where the person is looking: a banner at the top of the page (role="alert") that
says what was not done and why, with a link to the form; the form's first field in error is focused.

The page also lands on the refused form without script: each workflow form posts to an address ending in
the form's #fragment, so the browser shows the re-rendered page scrolled to that form.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from flask_wtf import FlaskForm

LOST_VERSION = "The form lost its version; reload the page."
EXPIRED = "The form expired; reload the page and try again."


@dataclass(frozen=True)
class Refusal:
    what: str                       # what was not done: "LEGAL_ENTITY was not assessed"
    problems: list[str] = field(default_factory=list)
    target: str = ""                # the id the banner links to: the first field in error, else the form
    focus: str | None = None        # the id of the first field in error, autofocused

    def __bool__(self) -> bool:
        return bool(self.problems)


def refusal_of(form: FlaskForm, what: str, form_id: str,
               dom_id: Callable[[str], str] = lambda name: name) -> Refusal | None:
    """The banner for a form that came back with errors (None when it has none). `dom_id` gives the id a field
    is rendered with on the page (fields of repeated forms carry a prefix)."""
    problems = list(form.form_errors)
    focus = None
    for item in form:
        if not item.errors or item.type == "CSRFTokenField":
            continue
        if item.name in ("version", "row_version"):
            problems.append(LOST_VERSION)
            continue
        problems += [f"{item.label.text}: {error}" for error in item.errors]
        focus = focus or dom_id(item.id)
    csrf = getattr(form, "csrf_token", None)
    if csrf is not None and csrf.errors:
        problems.append(EXPIRED)
    if not problems:
        return None
    return Refusal(what=what, problems=problems, target=focus or form_id, focus=focus)
