"""Reading stored objects defensively, and the time formats the API uses.

Objects are plain JSON dicts written by any client, so every read of a nested field
goes through :func:`dig` and the typed helpers, which return a default instead of
raising when a field is missing or has the wrong type. Timestamps are RFC 3339 UTC
with a ``Z`` and whole seconds, like ``metav1.Time`` (:mod:`common.times`).
"""

from __future__ import annotations

from typing import Any

from common.times import format_time, parse_time

__all__ = [
    "as_dict",
    "as_int",
    "as_list",
    "as_str",
    "clone",
    "dig",
    "format_time",
    "human_duration",
    "json_depth",
    "meta",
    "now_rfc3339",
    "parse_time",
]


def clone(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars); faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of JSON data, computed without recursion (so hostile input cannot blow the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def dig(obj: Any, *path: str | int, default: Any = None) -> Any:
    """``obj[p0][p1]...`` or ``default`` when a step is missing or of the wrong type."""
    current = obj
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or not -len(current) <= step < len(current):
                return default
            current = current[step]
        else:
            if not isinstance(current, dict) or step not in current:
                return default
            current = current[step]
    return current


def as_str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def as_int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    return value if isinstance(value, int) else default


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's ``metadata`` dict (validated on write, so always a dict in the store)."""
    return as_dict(obj.get("metadata"))


def now_rfc3339() -> str:
    return format_time()


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration`` (the AGE column): ``45s``, ``3m20s``, ``5h``, ``12d``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"
