"""The provider-verification back-office."""
from __future__ import annotations

import logging
import re
import secrets
import time
import uuid

import click
from flask import Flask, abort, flash, g, make_response, redirect, render_template, request, session, url_for
from flask.cli import ScriptInfo
from flask_login import current_user, logout_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

import config
from backoffice import formatting, signing, startup

# The app's own modules (blueprints, the admin, the Celery app, the commands) are imported inside the
# functions that wire them in: each of them imports from this package, so importing them here, before the
# package has finished loading, would be the cycle. tests/test_import_graph.py treats this module as wiring.

MAX_ID = 2**31 - 1


def create_app(config_name: str | None = None, overrides: dict | None = None) -> Flask:
    """Build the application: wiring only, no queries."""
    app = Flask(__name__, instance_path=str(config.INSTANCE))
    try:
        app.config.update(config.load(config_name, overrides))
        app.extensions["signing"] = signing.load(app.config)
    except config.SettingsError as error:
        if loaded_by_flask_command():
            startup.refuse(str(error))  # one line on stderr, not the traceback of an app that failed to load
        raise
    configure_logging(app)
    startup.refuse(startup.url_problem(app.config["SQLALCHEMY_DATABASE_URI"]))
    register_extensions(app)
    register_blueprints(app)
    register_rate_limits(app)
    register_request_hooks(app)
    register_errorhandlers(app)
    register_commands(app)
    from tasks.celery_app import init_celery

    init_celery(app)
    if loaded_by_flask_command():
        # Every flask command but a few works on the database: say at once when it cannot be reached.
        startup.require_database(app)
    return app


def loaded_by_flask_command() -> bool:
    """Whether the `flask` command line is loading the app for one of its commands (not a test runner, which
    hands it an app already built, nor Celery's command line, whose entry point checks for itself)."""
    context = click.get_current_context(silent=True)
    return context is not None and context.find_object(ScriptInfo) is not None


def configure_logging(app: Flask) -> None:
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """Foreign keys on, WAL and a busy timeout so web, worker and beat can share one SQLite file."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def register_extensions(app: Flask) -> None:
    from backoffice.extensions import csrf, db, login_manager, migrate
    from backoffice.services import accounts, provider_codes  # noqa: F401 (provider_codes: its session hook)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config.ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to open that page."
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def load_user(session_id: str):
        return accounts.load_session_account(db.session, session_id)

    if app.config["PROXY_FIX"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)


class DatabaseIdConverter(IntegerConverter):
    """`<int:id>` beyond what an id column holds is a 404, not an overflow deep in the database driver."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["int"] = DatabaseIdConverter
    from backoffice.admin import init_admin
    from backoffice.auth.account_views import bp as account_bp
    from backoffice.auth.views import bp as auth_bp
    from backoffice.portal.public import bp as public_bp
    from backoffice.portal.views import bp as portal_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(public_bp)
    app.register_blueprint(portal_bp, url_prefix="/portal")
    from backoffice.api.views import bp as api_bp
    from backoffice.api.views import well_known

    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(well_known)
    from backoffice.api.hsds_views import bp as hsds_bp

    app.register_blueprint(hsds_bp, url_prefix="/hsds")
    from backoffice.ops import bp as ops_bp

    app.register_blueprint(ops_bp)
    init_admin(app)


def register_rate_limits(app: Flask) -> None:
    from backoffice import ratelimit

    ratelimit.init_app(app)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def safe_url(value: str | None) -> str:
    """Only http and https links leave our pages; anything else becomes an inert '#'."""
    text = (value or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else "#"


def csp_nonce() -> str:
    """This response's nonce: the one value an inline script or style must carry to run."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def content_security_policy(nonce: str) -> str:
    """Scripts and styles from this site or carrying this response's nonce; no inline script, no plugins,
    no framing, forms post only here."""
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ])


def register_request_hooks(app: Flask) -> None:
    app.jinja_env.filters["safe_url"] = safe_url
    formatting.register(app)
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    from backoffice.services import audit

    admin_blueprints = {view.endpoint for view in app.extensions["admin"][0]._views}

    @app.before_request
    def deny_undeclared_routes():
        """Deny by default: a route must say who may use it (Flask-Admin views do so on their secured base)."""
        if request.endpoint is None or request.blueprint in admin_blueprints or request.endpoint == "static":
            return None
        if getattr(app.view_functions[request.endpoint], "allowed_roles", None) is None:
            abort(403)
        return None

    @app.before_request
    def staff_session_rules():
        """A staff session exists only after the second factor, and ends after a spell without requests."""
        from backoffice.auth.views import LAST_SEEN, PASSED

        if request.endpoint == "static" or not current_user.is_authenticated or not current_user.is_staff:
            return None
        now = int(time.time())
        idle_limit = app.config["STAFF_IDLE_TIMEOUT_MINUTES"] * 60
        passed = bool(session.get(PASSED))
        idle = now - int(session.get(LAST_SEEN, 0)) > idle_limit
        if not passed or idle:
            logout_user()
            session.clear()
            flash(f"You were signed out after {app.config['STAFF_IDLE_TIMEOUT_MINUTES']} minutes without "
                  "activity. Sign in again to go on." if passed else
                  "Staff pages open only after the second factor: sign in again.", "info")
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")
                                    if request.method == "GET" else None))
        session[LAST_SEEN] = now
        return None

    @app.before_request
    def bind_request_context():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.audit_token = audit.set_request_context(g.request_id, request.remote_addr)

    @app.teardown_request
    def unbind_request_context(exc):
        token = g.pop("audit_token", None)
        if token is not None:
            audit.reset_request_context(token)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Request-ID", g.get("request_id", ""))
        response.headers.setdefault("Content-Security-Policy", content_security_policy(csp_nonce()))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def register_errorhandlers(app: Flask) -> None:
    from backoffice import unit_of_work
    from backoffice.api.views import error as api_error
    from backoffice.services.errors import Conflict

    def render_error(exc: Exception, status: int, title: str, message: str):
        # The headers the error carries stay on the page that replaces it: Allow on a 405 above all.
        headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"] \
            if isinstance(exc, HTTPException) else []
        if request.path.startswith(("/api/", "/hsds/")):
            # The feed's consumers are programs: they get JSON in the shape the OpenAPI document gives.
            response = api_error(status, f"{title}: {message}")
        else:
            response = make_response(render_template("error.html", status=status, title=title, message=message),
                                     status)
        response.headers.extend(headers)
        return response

    app.register_error_handler(400, lambda e: render_error(e, 400, "Bad request", "The request could not be understood."))
    app.register_error_handler(
        CSRFError, lambda e: render_error(e, 400, "Form expired", "The form was missing its security token or it expired. Go back, reload the page and try again.")
    )
    app.register_error_handler(403, lambda e: render_error(e, 403, "Not allowed", "Your account does not have access to this page."))
    app.register_error_handler(404, lambda e: render_error(e, 404, "Not found", "There is no page at this address."))
    app.register_error_handler(413, lambda e: render_error(
        e, 413, "Upload too large", "What you sent is larger than this site accepts. Upload fewer or smaller files."))
    app.register_error_handler(429, lambda e: render_error(
        e, 429, "Too many attempts", f"You have tried this too often (the limit is {e.description}). Try again once that time has passed."))
    app.register_error_handler(405, lambda e: render_error(
        e, 405, "Method not allowed", "This page does not accept that kind of request."))

    def lost_race(exc: Conflict):
        # A conflict no handler caught (a race lost at commit): nothing of the request is kept.
        unit_of_work.discard()
        return render_error(exc, 409, "Changed by someone else", str(exc))

    app.register_error_handler(Conflict, lost_race)


def register_commands(app: Flask) -> None:
    from backoffice.cli import register

    register(app)
