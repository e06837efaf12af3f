"""UTC times as text, one way for the whole project.

Every wall-clock time in the code is seconds since the epoch. On the wire and in files it
is RFC 3339 in UTC with a ``Z``: whole seconds for Kubernetes object times
(``creationTimestamp``, conditions), milliseconds where people read it (reports),
microseconds where a time must survive a round trip (leases, backups, PITR targets).

Reading is lenient in one documented way: an RFC 3339 / ISO-8601 string with ``Z``
(either case) or a numeric offset, or without one (then it means UTC), any number of
fraction digits (beyond microseconds is truncated), surrounding blanks ignored; or an
epoch number (int or float, not bool, finite). Anything else is "not a time":
``parse_time`` answers None, ``require_time`` raises ValueError naming the value.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

__all__ = ["format_time", "parse_duration", "parse_time", "require_time", "utc_iso"]

_DIGITS = (0, 3, 6)


def format_time(epoch: float | None = None, *, digits: int = 0) -> str:
    """Epoch seconds (default: now) -> ``2026-11-27T00:01:02Z``, with 0, 3 or 6 fraction digits.

    ``digits=0`` is Kubernetes' ``metav1.Time``; extra precision is cut, never rounded up.
    """
    if digits not in _DIGITS:
        raise ValueError(f"digits must be one of {_DIGITS}, got {digits!r}")
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    return text + "Z"


def utc_iso(epoch: float | None) -> str | None:
    """``1700000000.5`` -> ``"2023-11-14T22:13:20.500Z"`` (milliseconds); ``None`` -> ``None``."""
    return None if epoch is None else format_time(epoch, digits=3)


def parse_time(value: object) -> float | None:
    """Epoch seconds of a time string or epoch number (see the module docstring), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("z"):
        text = text[:-1] + "Z"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def require_time(value: object) -> float:
    """Like :func:`parse_time`, but a value that is not a time raises ValueError naming it."""
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError(
            f"{value!r} is not a time: use RFC 3339 (e.g. 2026-11-27T00:01:02.123456Z, "
            "an offset such as +02:00, or no offset for UTC) or epoch seconds"
        )
    return parsed


_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(value: object) -> float:
    """A Prometheus/Go duration (``30s``, ``1m``, ``1h30m``, ``500ms``) or a number of seconds -> seconds.

    ValueError naming the value when it is neither.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    text = str(value).strip() if isinstance(value, str) else ""
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration: use e.g. 30s, 1m, 1h30m, 500ms, or seconds")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
