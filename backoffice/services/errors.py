"""Domain errors raised by services; views turn them into clear messages."""


class DomainError(Exception):
    """A rule of the domain forbids the requested change; nothing was written."""


class NotAllowed(DomainError):
    """The actor may not do this."""


class InvalidTransition(DomainError):
    """The entity's state does not allow this change."""


class Conflict(DomainError):
    """Someone else changed the same thing first."""
