"""What a Chaos Toolkit journal (``chaos-journal.json``) says went wrong.

Chaos Toolkit marks an activity ``failed`` when it raised, and keeps running the rest
of the method; a fault action that failed (an eviction forbidden, a drain refused)
therefore leaves a run that may look healthy in the journal of writes. The analysis
takes these failures as violations, so a fault that did not happen cannot read GO.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["failed_activities", "last_line"]


def last_line(value: Any) -> str:
    """The last non-empty line of an exception as Chaos Toolkit stores it (a list of lines or text)."""
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    lines = [line.strip() for line in str(value or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no reason recorded"


SECTIONS = {"method": ("run", "activity"), "rollbacks": ("rollbacks", "rollback")}


def failed_activities(
    journal: Mapping[str, Any] | None, sections: tuple[str, ...] = ("method", "rollbacks")
) -> list[tuple[str, str]]:
    """``(label, reason)`` of every failed method activity (``activity 'name'``) and rollback
    (``rollback 'name'``), in the ``sections`` asked for."""
    out: list[tuple[str, str]] = []
    for section in sections:
        key, where = SECTIONS[section]
        runs = (journal or {}).get(key)
        for item in runs if isinstance(runs, list) else []:
            if isinstance(item, dict) and item.get("status") == "failed":
                activity = item.get("activity")
                name = activity.get("name") if isinstance(activity, dict) else None
                out.append((f"{where} '{name or 'unnamed'}'", last_line(item.get("exception"))))
    return out
