"""The reports package's one root exception.

Raised for anything a user can fix (a run folder without ``run.json``, an unreadable
journal); the message is one line naming the file and the fix, so the CLI can print
it without a traceback.
"""

__all__ = ["ReportError"]


class ReportError(Exception):
    """A report cannot be made; the message names the problem and what to do next."""
