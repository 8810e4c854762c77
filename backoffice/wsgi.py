"""Entry point for `gunicorn backoffice.wsgi:app`: the app, once its database answers."""
from backoffice import create_app, startup

app = startup.build(create_app)
startup.require_database(app)
startup.settle(app.config["GC_FREEZE"])
