"""Extension objects, created unbound and initialised in create_app()."""
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from backoffice.models.base import Base
from backoffice.txn import BackofficeSession

# A lost race raises services.errors.LostRace whichever statement loses (backoffice/txn.py).
db = SQLAlchemy(model_class=Base, session_options={"class_": BackofficeSession})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
