"""A database the app cannot use, or settings that contradict each other, stop the process at start with one
line that names the setting to fix.

Without this a mistyped URL, an unknown driver, a server that does not answer or a database that does not
exist surfaces as a long traceback from deep in SQLAlchemy or the driver, which never says which setting
to fix. The URL is shown with its password hidden. Settings are judged by config.check_consistency.
"""
from __future__ import annotations

import gc
import os
import re
import sys
from typing import Callable

from flask import Flask
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

import config
from backoffice.extensions import db

SUPPORTED_BACKENDS = ("postgresql", "sqlite")
EXAMPLES = "postgresql://USER:PASSWORD@HOST:5432/NAME or sqlite:////absolute/path/backoffice.db"
# Also gunicorn's "worker failed to boot": the server stops instead of restarting workers that cannot start.
EXIT_STATUS = 3
_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


class StartRefused(SystemExit):
    """Stops the process (status 3) after the one line saying which setting is wrong."""

    def __init__(self, message: str):
        super().__init__(EXIT_STATUS)
        self.message = message


def shown(url: str | URL) -> str:
    """The URL as a message may show it: the password replaced by ***."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _PASSWORD.sub(r"\1***@", url)


def _named(url: str | URL) -> str:
    """The setting and its value as the person set it (postgres:// stays postgres://), password hidden."""
    given = os.environ.get("DATABASE_URL")
    used = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    if given is None:
        return f"DATABASE_URL (not set, so the default {shown(url)})"
    if config.normalise_database_url(given) != used:
        return f"DATABASE_URL {shown(url)}"
    return f"DATABASE_URL {shown(given)}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def url_problem(raw: str) -> str | None:
    """What makes the URL unusable before any connection is tried (its form, its backend, its driver)."""
    try:
        url = make_url(raw)
    except ArgumentError:
        return f"DATABASE_URL is not a database URL: {shown(raw)!r}. Give one like {EXAMPLES}."
    named = _named(url)
    if url.get_backend_name() not in SUPPORTED_BACKENDS:
        return (f"{named} names a kind of database this back-office does not run on "
                f"({url.get_backend_name()!r}): use {EXAMPLES}.")
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        return (f"{named} names an unknown driver {url.get_driver_name()!r} for {url.get_backend_name()}: "
                f"leave the driver out ({url.get_backend_name()}://...) to use the one installed.")
    try:
        dialect.import_dbapi()
    except ImportError as error:
        return f"{named} needs a driver that is not installed ({_one_line(error)})."
    return None


def connection_problem(app: Flask) -> str | None:
    """Whether the app's database answers: one connection, opened and closed."""
    with app.app_context():
        try:
            db.engine.connect().close()
        except DBAPIError as error:
            return (f"{_named(db.engine.url)}: cannot connect to the database: "
                    f"{_one_line(error.orig or error)}")
        finally:
            # No connection outlives the check: a process that forks next (gunicorn --preload, Celery's
            # prefork pool) must not hand one connection to several children.
            db.engine.dispose()
    return None


def refuse(problem: str | None) -> None:
    """Say what is wrong on stderr and stop, or do nothing when nothing is."""
    if problem:
        print(problem, file=sys.stderr, flush=True)
        raise StartRefused(problem)


def require_database(app: Flask) -> None:
    """For the entry points that serve or work (gunicorn, Celery, flask commands): stop unless it answers.
    Under gunicorn this runs once in the master with --preload; without it each worker checks, and gunicorn
    stops when one of them cannot start."""
    refuse(connection_problem(app))


def settle(freeze: bool) -> None:
    """For the entry points that serve or work, once start-up is done: everything alive now lives as long as
    the process, so the garbage collector stops walking it (gc.freeze). A full collection then costs what the
    requests since allocated, not the whole heap: that walk was the open-findings worklist's p95. Under
    gunicorn --preload this runs in the master, and the forked workers inherit the frozen heap untouched.
    `freeze` is the GC_FREEZE setting."""
    if freeze:
        gc.collect()
        gc.freeze()


def build(factory: Callable[[], Flask]) -> Flask:
    """For the entry points that serve or work: the app, or one line on stderr naming the settings it refuses."""
    try:
        return factory()
    except config.SettingsError as error:
        refuse(str(error))
