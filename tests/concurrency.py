"""Run the same piece of work from several threads at once, each with its own database session, as two
requests or two workers would."""
from __future__ import annotations

import threading
from typing import Callable, Iterable

from sqlalchemy.orm import Session

from backoffice.extensions import db
from backoffice.services.errors import DomainError


def own_session() -> Session:
    """A new session of the class db.session uses (what a request or a task gets), on the app's engine."""
    return db.session.session_factory()


def race(app, action: Callable[[Session, object], object], args: Iterable) -> tuple[list[str], list[Exception]]:
    """Call `action(own_session, arg)` for each arg in its own thread and commit. Returns the outcomes ("done",
    or the message of a refusal) and anything else raised, which a test asserts is empty: a crash must never
    pass for a refusal."""
    outcomes, errors = [], []

    def run(arg):
        try:
            with app.app_context(), own_session() as own:
                try:
                    action(own, arg)
                    own.commit()
                    outcomes.append("done")
                except DomainError as exc:
                    own.rollback()
                    outcomes.append(str(exc))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes, errors
