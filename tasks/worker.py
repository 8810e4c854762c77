"""Entry point for `celery -A tasks.worker worker` and `celery -A tasks.worker beat`."""
from backoffice import create_app, startup

flask_app = startup.build(create_app)
startup.require_database(flask_app)
celery = flask_app.extensions["celery"]
