"""Reading the JSON files of a run folder: one object per file, one clear line when it is not."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from reports.errors import ReportError

__all__ = ["number", "optional_object", "read_object"]


def read_object(path: Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``; ReportError naming the file and ``fix`` otherwise."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} cannot be read as JSON ({exc}); {fix}") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path} must hold a JSON object; {fix}")
    return doc


def optional_object(path: Path, fix: str) -> dict[str, Any] | None:
    """:func:`read_object`, or None when the file does not exist."""
    return read_object(path, fix) if Path(path).is_file() else None


def number(value: Any) -> float | None:
    """A finite JSON number as float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None
