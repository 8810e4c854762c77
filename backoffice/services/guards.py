"""Who may act: the role guards the services share. Each raises NotAllowed, and then nothing is written."""
from __future__ import annotations

from backoffice.models import RESEARCH_ROLES, Account, Role
from backoffice.services.errors import NotAllowed


def require_researcher(actor: Account) -> None:
    if not actor.has_role(*RESEARCH_ROLES):
        raise NotAllowed("Only the research team can do this.")


def require_lead(actor: Account) -> None:
    if not actor.has_role(Role.RESEARCH_LEAD):
        raise NotAllowed("Only a research lead can do this.")


def require_admin(actor: Account) -> None:
    if not actor.has_role(Role.ADMIN):
        raise NotAllowed("Only an admin manages staff accounts.")
