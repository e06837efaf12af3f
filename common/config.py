"""Reading configuration values the same way everywhere.

Chaos Toolkit configuration, var files, environment variables and query strings give
values as JSON types or as text, so a switch may arrive as ``true``, ``"True"``, ``"1"`` or
``"yes"``, and a list as ``"a, b"`` or ``["a", "b"]``. These readers accept all of those
and refuse anything else with a message that names the value, so a typo never silently
picks the default.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigurationError", "boolean", "name_list"]

_TRUE = frozenset({"true", "t", "1", "yes", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "off"})
ACCEPTED = "true/false, yes/no, on/off, t/f or 1/0"


class ConfigurationError(ValueError):
    """A configuration value cannot be read as what it must be; the message names it."""


def boolean(value: object, *, default: bool, name: str = "") -> bool:
    """A switch: a bool, or ``true/false/1/0/yes/no/t/f/on/off`` in any case; unset -> ``default``.

    None and the empty (or blank) string mean unset. Anything else raises
    ConfigurationError (a ValueError); ``name`` (the key) is put in its message.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return default
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    where = f"{name} " if name else ""
    raise ConfigurationError(f"{where}{value!r} is not a boolean: use {ACCEPTED}")


def name_list(value: Any) -> list[str]:
    """A configuration value listing names: ``"a, b"`` or ``["a", "b"]``; empty entries dropped.

    Environment variables and var files give comma-separated strings, JSON gives lists;
    an unset value (``""`` or None) is the empty list, never ``[""]``.
    """
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [name for name in (str(item).strip() for item in items) if name]
