"""The fault log: ``<run_dir>/faults.jsonl``, one JSON object per line.

Whoever injects a fault appends a line with the fields of :class:`probes.model.Fault`
(``record_fault``) and, when the injection itself has finished, an
``{"event": "ended", "name": ..., "ended_at": ...}`` line (``mark_ended``). The file is
only ever appended to, so several injectors (separate processes) can share it and no
run ever truncates an earlier record. ``read_faults`` folds the ``ended`` lines into
their faults and returns them sorted by injection time. A line it cannot read is an
error naming the file and line, never silently skipped: a dropped fault would make a
run look healthier than it was.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from probes.errors import ProbeError
from probes.model import Fault

__all__ = ["FAULT_LOG_NAME", "mark_ended", "read_faults", "record_fault"]

FAULT_LOG_NAME = "faults.jsonl"

_FIX = "fix or delete that line (each line is one JSON object written by record_fault or mark_ended)"


def _append(path: Path, record: dict[str, Any], what: str) -> None:
    try:
        text = json.dumps(record, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProbeError(
            f"cannot record {what} in {path}: {exc}; pass only strings, numbers, lists and dicts"
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line in append mode: concurrent appenders never interleave or truncate.
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text + "\n")


def record_fault(path: Path, fault: Fault) -> None:
    """Append one fault to the log at ``path`` (created if missing, never truncated)."""
    _append(Path(path), asdict(fault), f"fault {fault.name!r}")


def mark_ended(path: Path, name: str, ended_at: float) -> None:
    """Append the end of the injection of fault ``name`` (``read_faults`` folds it in)."""
    _append(Path(path), {"event": "ended", "name": name, "ended_at": ended_at}, f"end of fault {name!r}")


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fault(record: dict[str, Any]) -> Fault:
    """Build a Fault from one decoded line; ValueError says what is wrong with it."""
    allowed = {"name", "kind", "injected_at", "target", "ended_at", "details"}
    unknown = sorted(set(record) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    for required in ("name", "kind", "injected_at"):
        if required not in record:
            raise ValueError(f"missing field {required!r}")
    if not isinstance(record["name"], str) or not record["name"]:
        raise ValueError("'name' must be a non-empty string")
    if not isinstance(record["kind"], str):
        raise ValueError("'kind' must be a string")
    if not _is_time(record["injected_at"]):
        raise ValueError("'injected_at' must be a number (epoch seconds, UTC)")
    target = record.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError("'target' must be a string or null")
    ended_at = record.get("ended_at")
    if ended_at is not None and not _is_time(ended_at):
        raise ValueError("'ended_at' must be a number or null")
    details = record.get("details", {})
    if not isinstance(details, dict):
        raise ValueError("'details' must be an object")
    return Fault(
        name=record["name"],
        kind=record["kind"],
        injected_at=float(record["injected_at"]),
        target=target,
        ended_at=None if ended_at is None else float(ended_at),
        details=details,
    )


def read_faults(path: Path) -> list[Fault]:
    """Every fault in the log, sorted by ``injected_at``; a missing file means no faults.

    An ``ended`` line applies to the latest fault of that name recorded before it.
    Raises ProbeError naming the file and line number for a line it cannot read.
    """
    path = Path(path)
    if not path.exists():
        return []
    faults: list[Fault] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProbeError(f"{where}: not valid JSON ({exc.msg}); {_FIX}") from exc
            if not isinstance(record, dict):
                raise ProbeError(f"{where}: expected a JSON object, got {type(record).__name__}; {_FIX}")
            if "event" in record:
                faults = _fold_event(faults, record, where)
                continue
            try:
                faults.append(_fault(record))
            except ValueError as exc:
                raise ProbeError(f"{where}: {exc}; {_FIX}") from exc
    return sorted(faults, key=lambda f: f.injected_at)


def _fold_event(faults: list[Fault], record: dict[str, Any], where: str) -> list[Fault]:
    if record.get("event") != "ended":
        raise ProbeError(f"{where}: unknown event {record.get('event')!r} (only 'ended' exists); {_FIX}")
    name, ended_at = record.get("name"), record.get("ended_at")
    if not isinstance(name, str) or not isinstance(ended_at, int | float) or not _is_time(ended_at):
        raise ProbeError(f"{where}: an 'ended' line needs a string 'name' and a number 'ended_at'; {_FIX}")
    for index in range(len(faults) - 1, -1, -1):
        if faults[index].name == name:
            faults[index] = replace(faults[index], ended_at=float(ended_at))
            return faults
    raise ProbeError(f"{where}: 'ended' names fault {name!r}, which no earlier line recorded; {_FIX}")
