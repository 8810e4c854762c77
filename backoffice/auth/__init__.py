"""Sign-in, sessions and role checks for staff and providers."""
