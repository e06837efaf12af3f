"""Timestamp formatting shared by the summary, the report and the plots.

Every wall-clock time in the data model is seconds since the epoch, UTC. People read
them as ISO-8601 with a ``Z`` suffix (millisecond precision); ``None`` stays ``None``.
``parse_time`` accepts either form, for ``run.json`` fields written by other tools.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["parse_time", "utc_iso"]


def utc_iso(epoch: float | None) -> str | None:
    """``1700000000.5`` -> ``"2023-11-14T22:13:20.500Z"``; ``None`` -> ``None``."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: object) -> float | None:
    """An epoch number or an ISO-8601 string (naive means UTC) -> epoch seconds, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None
