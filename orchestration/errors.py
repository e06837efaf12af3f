"""The orchestration layer's one root exception."""

from __future__ import annotations

__all__ = ["OrchestrationError"]


class OrchestrationError(Exception):
    """A run cannot be driven as configured; the message is one line naming the problem and the fix."""
