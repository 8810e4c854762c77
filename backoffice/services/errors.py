"""Domain errors raised by services; views turn them into clear messages."""


class DomainError(Exception):
    """A rule of the domain forbids the requested change; nothing was written. `field` names the input the
    message is about, when there is one, so a form can show it in the right place."""

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.field = field

    def __reduce__(self):
        # The keyword-only `field` travels as state, so the error survives pickling (a task boundary).
        return type(self), self.args, self.__dict__


class NotAllowed(DomainError):
    """The actor may not do this."""


class InvalidTransition(DomainError):
    """The entity's state does not allow this change."""


class Conflict(DomainError):
    """Someone else changed the same thing first."""


LOST_RACE_MESSAGE = ("Someone else changed the same records at the same moment. Nothing of yours was saved: "
                     "reload the page to see their change, then try again.")


class LostRace(Conflict):
    """The database refused this transaction's write because another transaction changed the same rows first
    (a stale row version, a deadlock, a serialisation failure). The transaction is rolled back whole; running
    it again from fresh reads may succeed (backoffice/txn.py raises it, sweeps retry it)."""

    def __init__(self, message: str = LOST_RACE_MESSAGE, *, field: str | None = None):
        super().__init__(message, field=field)
