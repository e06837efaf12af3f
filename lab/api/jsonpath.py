"""The small JSONPath subset CRD ``additionalPrinterColumns`` use.

Supported: ``.a.b``, ``.a[0]``, ``.a[*].b``, ``.a[?(@.type=="Ready")].status``,
``['key.with.dots']``, an optional ``{...}`` wrapper. Returns every match (a list);
an unsupported expression matches nothing rather than failing the request.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["evaluate"]

_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-$]+)
      |\[(?P<index>-?\d+|\*)\]
      |\[\?\(@\.(?P<fkey>[A-Za-z0-9_.\-]+)\s*(?P<fop>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\)\]
      |\[['"](?P<quoted>[^'"]+)['"]\]""",
    re.VERBOSE,
)


def _steps(expr: str) -> list[re.Match[str]] | None:
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    if expr.startswith("$"):
        expr = expr[1:]
    steps, pos = [], 0
    while pos < len(expr):
        m = _STEP.match(expr, pos)
        if not m:
            return None
        steps.append(m)
        pos = m.end()
    return steps


def _field(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def evaluate(expr: str, obj: Any) -> list[Any]:
    steps = _steps(expr)
    if steps is None:
        return []
    current = [obj]
    for m in steps:
        found: list[Any] = []
        for value in current:
            if m.group("field") is not None or m.group("quoted") is not None:
                key = m.group("field") or m.group("quoted")
                if isinstance(value, dict) and key in value:
                    found.append(value[key])
            elif m.group("index") is not None:
                if not isinstance(value, list):
                    continue
                if m.group("index") == "*":
                    found.extend(value)
                elif -len(value) <= int(m.group("index")) < len(value):
                    found.append(value[int(m.group("index"))])
            else:
                wanted = m.group("fval").strip("\"'")
                for item in value if isinstance(value, list) else []:
                    got = _field(item, m.group("fkey"))
                    text = (
                        str(got).lower() if isinstance(got, bool) else str(got) if got is not None else None
                    )
                    if (text == wanted) == (m.group("fop") == "=="):
                        found.append(item)
        current = found
    return current
