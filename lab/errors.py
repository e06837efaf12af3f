"""The lab's one root exception.

Every error a user can cause in the lab says what went wrong and what to do next,
in one line, so the CLI can print it without a traceback.
"""

__all__ = ["LabError"]


class LabError(Exception):
    """Something in the embedded lab failed; the message names the problem and the fix."""
