"""The probes package's one root exception.

Raised for anything a user can fix (a malformed fault log, an unreadable journal, a
tenant that cannot be read back); the message is one line that names the problem and
the fix, and never contains a password.
"""

__all__ = ["ProbeError"]


class ProbeError(Exception):
    """A probe or the analysis cannot do what was asked; the message says what to do next."""
