"""One commit point for a request, a task and a command.

Services change the session and never commit; the code that calls them (a view, a task, a CLI command) ends
its unit of work here and nowhere else:

- `atomic(session)`: a block that commits once when it ends normally and rolls back when anything escapes it
  (the exception goes on to the caller). Tasks and commands use it for each transaction they run; sweeps
  that retry a lost race use `retrying` and `one_by_one` below, which run their work inside it.
- `submit(form, action, done=..., again=...)`: a form post. The form is validated; `action(form)` runs in one
  unit of work; on success the page answers `done(result)`. A form that does not validate, or a refusal
  (a services.errors.DomainError, a lost race included), rolls back everything the action wrote and answers
  `again(form, status)`: the same page with the refusal beside the field it names (or above the form) and
  what was typed kept; 400 for a refusal, 409 for a Conflict.
- `discard(session)`: end a transaction that only read (before a network call, after a read-only page).
- `perform(action, done=..., refused=...)`: the same for a post without fields of its own (a confirm button):
  `refused(error, status)` decides how the refusal is shown (a banner, a flash).

Nothing else in views, tasks or commands calls `commit()` (tests/test_unit_of_work.py reads the sources).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from flask_wtf import FlaskForm
from sqlalchemy.orm import Session, scoped_session

from backoffice.extensions import db
from backoffice.services.errors import Conflict, DomainError, LostRace

log = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K")
F = TypeVar("F", bound=FlaskForm)
Response = object


@contextmanager
def atomic(session: Session | scoped_session | None = None) -> Iterator[Session | scoped_session]:
    """Commit once when the block ends normally; roll back and re-raise when anything escapes it."""
    session = session if session is not None else db.session
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def discard(session: Session | scoped_session | None = None) -> None:
    """End the transaction keeping nothing: after a read, before a long wait (a network call) or once a
    read-only answer is built, so no transaction (or SQLite lock) stays open."""
    (session if session is not None else db.session).rollback()


def status_of(error: DomainError) -> int:
    """The status of a refused request: 409 when someone else's change won, 400 otherwise."""
    return 409 if isinstance(error, Conflict) else 400


def show_beside(form: FlaskForm, error: DomainError, default: str | None = None) -> None:
    """A service's refusal under the field it names (or `default`) when the form has it, else above the form."""
    name = error.field or default
    target = getattr(form, name, None) if name else None
    if target is not None and not getattr(target.flags, "hidden", False):
        target.errors = [*target.errors, str(error)]
    else:
        form.form_errors.append(str(error))


def submit(form: F, action: Callable[[F], T], *, done: Callable[[T], Response],
           again: Callable[[F, int], Response], default_field: str | None = None,
           session: Session | scoped_session | None = None,
           refused: Callable[[F, DomainError, int], Response] | None = None) -> Response:
    """Validate `form`, run `action(form)` as one unit of work and answer `done(result)`; an invalid form or a
    refusal changes nothing and answers `again(form, status)` with the refusal shown on the form.

    A page that shows a refusal its own way (a banner above the page rather than on the form) passes
    `refused(form, error, status)`: it answers the refusal instead, once everything is rolled back."""
    if not form.validate_on_submit():
        return again(form, 400)
    try:
        with atomic(session):
            result = action(form)
    except DomainError as error:
        if refused is not None:
            return refused(form, error, status_of(error))
        show_beside(form, error, default_field)
        return again(form, status_of(error))
    return done(result)


def perform(action: Callable[[], T], *, done: Callable[[T], Response],
            refused: Callable[[DomainError, int], Response],
            session: Session | scoped_session | None = None) -> Response:
    """Run `action()` as one unit of work and answer `done(result)`; a refusal changes nothing and answers
    `refused(error, status)`."""
    try:
        with atomic(session):
            result = action()
    except DomainError as error:
        return refused(error, status_of(error))
    return done(result)


def retrying(session: Session | scoped_session, work: Callable[[], T], *, attempts: int = 3,
             what: str = "a transaction") -> T:
    """Run `work` and commit, as one small unit of work; when it loses a race, roll back and run it again from
    fresh reads, up to `attempts` times in all, then let the last LostRace go to the caller."""
    for attempt in range(1, attempts + 1):
        try:
            with atomic(session):
                return work()
        except LostRace:
            if attempt == attempts:
                log.warning("%s lost a race %s times; giving up for now", what, attempts)
                raise
            log.info("%s lost a race (attempt %s of %s); trying again", what, attempt, attempts)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def one_by_one(session: Session | scoped_session, items: Iterable[K], work: Callable[[K], bool], *,
               attempts: int = 3, what: str = "item") -> tuple[int, list[K]]:
    """A sweep's pass: each item in its own small transaction (retried when it loses a race), so one item
    that keeps losing is left for the next pass and never holds back or undoes the others.

    Returns how many items `work` changed (it returns True when it did) and the items left for next time
    (those that kept losing races, and any that failed, whose traceback is logged).
    """
    changed, left = 0, []
    for item in items:
        try:
            changed += bool(retrying(session, lambda: work(item),  # noqa: B023 - retrying calls it at once
                                     attempts=attempts, what=f"{what} {item}"))
        except LostRace:
            left.append(item)
        except Exception:  # noqa: BLE001 - one item's failure is logged and left; the others still run
            log.exception("%s %s failed; left for the next pass", what, item)
            left.append(item)
    return changed, left
