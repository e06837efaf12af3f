"""Table columns: the :class:`Column` type and the cell builders every printer uses.

A column's ``cell`` reads one object defensively (any field may be missing or of the
wrong type) plus the current time; priority 1 columns show only with ``-o wide``.
Durations are formatted like Kubernetes' ``HumanDuration`` (``45s``, ``3m20s``, ``5d``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.api.fields import as_dict, as_int, as_list, as_str, dig, human_duration, meta, parse_time

__all__ = [
    "AGE",
    "CONTAINERS",
    "IMAGES",
    "NAME",
    "SELECTOR",
    "Cell",
    "Column",
    "age",
    "ago",
    "count",
    "created_at",
    "integer",
    "name_column",
    "or_na",
    "path",
    "ratio",
    "since",
]

Cell = Callable[[dict[str, Any], float], Any]


@dataclass(frozen=True)
class Column:
    name: str
    cell: Cell
    type: str = "string"
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description or self.name,
            "priority": self.priority,
        }


def since(value: Any, now: float) -> str:
    stamp = parse_time(value)
    return human_duration(now - stamp) if stamp is not None else "<unknown>"


def age(obj: dict[str, Any], now: float) -> str:
    return since(meta(obj).get("creationTimestamp"), now)


def name_column() -> Column:
    return Column(
        "Name",
        lambda o, _n: as_str(meta(o).get("name")),
        format="name",
        description="Name must be unique within a namespace.",
    )


def path(*steps: str | int, default: Any = "<none>") -> Cell:
    """The value at ``steps``, or ``default`` when missing or empty."""

    def cell(obj: dict[str, Any], _now: float) -> Any:
        value = dig(obj, *steps)
        return default if value in (None, "") else value

    return cell


def integer(*steps: str) -> Cell:
    return lambda o, _n: as_int(dig(o, *steps))


def count(*steps: str) -> Cell:
    """Length of the list or map at ``steps``."""
    return lambda o, _n: len(as_list(dig(o, *steps))) + len(as_dict(dig(o, *steps)))


def ratio(ready: tuple[str, ...], total: tuple[str, ...]) -> Cell:
    return lambda o, _n: f"{as_int(dig(o, *ready))}/{as_int(dig(o, *total))}"


def or_na(*steps: str) -> Cell:
    return lambda o, _n: str(dig(o, *steps)) if dig(o, *steps) is not None else "N/A"


def ago(*steps: str) -> Cell:
    return lambda o, now: since(dig(o, *steps), now) if dig(o, *steps) else "<none>"


def created_at() -> Column:
    return Column("Created At", lambda o, _n: as_str(meta(o).get("creationTimestamp")), "date")


def _template_list(field: str) -> Cell:
    def cell(obj: dict[str, Any], _now: float) -> str:
        containers = as_list(dig(obj, "spec", "template", "spec", "containers")) or as_list(
            dig(obj, "spec", "jobTemplate", "spec", "template", "spec", "containers")
        )
        return ",".join(as_str(dig(c, field)) for c in containers) or "<none>"

    return cell


def _selector(obj: dict[str, Any], _now: float) -> str:
    labels = as_dict(dig(obj, "spec", "selector", "matchLabels")) or as_dict(dig(obj, "spec", "selector"))
    parts = [f"{k}={v}" for k, v in labels.items() if isinstance(v, str)]
    return ",".join(parts) or "<none>"


AGE = Column(
    "Age",
    age,
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)
NAME = name_column()
CONTAINERS = Column("Containers", _template_list("name"), priority=1)
IMAGES = Column("Images", _template_list("image"), priority=1)
SELECTOR = Column("Selector", _selector, priority=1)
