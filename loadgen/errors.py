"""The load generator's one root exception.

Raised for anything a user can fix (a wrong tenants file, an unreachable server, an
unknown ODBC driver); the message is one line that names the problem and the fix,
and never contains a password.
"""

__all__ = ["LoadgenError"]


class LoadgenError(Exception):
    """The load generator cannot do what was asked; the message says what to do next."""
