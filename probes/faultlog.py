"""The fault log: ``<run_dir>/faults.jsonl``, one JSON object per line.

Whoever injects a fault appends a line with the fields of :class:`probes.model.Fault`
(``record_fault``) and, when the injection itself has finished, an
``{"event": "ended", "name": ..., "ended_at": ...}`` line (``mark_ended``). The file is
only ever appended to, so several injectors (separate processes) can share it and no
run ever truncates an earlier record. ``read_faults`` folds the ``ended`` lines into
their faults and returns them sorted by injection time. A line it cannot read is an
error naming the file and line, never silently skipped: a dropped fault would make a
run look healthier than it was.

A fault is recorded *before* it is injected, so a crash mid-injection still leaves it
in the log. When the injection happens later than that record (a command that must
start up before it sends its signal, e.g. ``python -m lab restart-node``), and the
injector learns the real moment, it appends
``{"event": "signalled", "name": ..., "injected_at": ..., "uncertainty_seconds": ...}``
(``mark_signalled``): RTO is then measured from the real injection, not from a time
up to half a second early. The fault keeps the first time as ``details["recorded_at"]``,
and ``details["injection_uncertainty_seconds"]`` says how long after ``injected_at``
the injection may still have been going on (null: not known).

What was seen about a fault after it was injected (how a lost node was handled)
is appended as ``{"event": "observed", "name": ..., "details": {...}}``
(``mark_observed``): its keys are merged into the fault's ``details``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from probes.errors import ProbeError
from probes.model import Fault

__all__ = ["FAULT_LOG_NAME", "mark_ended", "mark_observed", "mark_signalled", "read_faults", "record_fault"]

FAULT_LOG_NAME = "faults.jsonl"

_FIX = (
    "fix or delete that line "
    "(each line is one JSON object written by record_fault, mark_ended, mark_signalled or mark_observed)"
)


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


def mark_signalled(
    path: Path, name: str, injected_at: float, uncertainty_seconds: float | None = None
) -> None:
    """Append the real injection time of fault ``name`` (``read_faults`` folds it in).

    ``injected_at`` is the wall-clock time (UTC epoch seconds) taken just before the
    fault's first signal; ``uncertainty_seconds``, if known, how long the injection took
    from then (e.g. until every process of a node was gone).
    """
    record = {
        "event": "signalled",
        "name": name,
        "injected_at": injected_at,
        "uncertainty_seconds": uncertainty_seconds,
    }
    _append(Path(path), record, f"injection time of fault {name!r}")


def mark_observed(path: Path, name: str, details: dict[str, Any]) -> None:
    """Append what was seen about fault ``name`` after its injection (merged into its details)."""
    record = {"event": "observed", "name": name, "details": details}
    _append(Path(path), record, f"observations of fault {name!r}")


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
    event = record.get("event")
    if event == "ended":
        return _fold_ended(faults, record, where)
    if event == "signalled":
        return _fold_signalled(faults, record, where)
    if event == "observed":
        return _fold_observed(faults, record, where)
    raise ProbeError(
        f"{where}: unknown event {event!r} (only 'ended', 'signalled' and 'observed' exist); {_FIX}"
    )


def _fold_observed(faults: list[Fault], record: dict[str, Any], where: str) -> list[Fault]:
    name, details = record.get("name"), record.get("details")
    if not isinstance(name, str) or not isinstance(details, dict):
        raise ProbeError(f"{where}: an 'observed' line needs a string 'name' and an object 'details'; {_FIX}")
    index = _latest(faults, name, "observed", where)
    faults[index] = replace(faults[index], details={**faults[index].details, **details})
    return faults


def _latest(faults: list[Fault], name: str, event: str, where: str) -> int:
    """Index of the latest fault called ``name``; ProbeError if none was recorded before."""
    for index in range(len(faults) - 1, -1, -1):
        if faults[index].name == name:
            return index
    raise ProbeError(f"{where}: {event!r} names fault {name!r}, which no earlier line recorded; {_FIX}")


def _fold_ended(faults: list[Fault], record: dict[str, Any], where: str) -> list[Fault]:
    name, ended_at = record.get("name"), record.get("ended_at")
    if not isinstance(name, str) or not isinstance(ended_at, int | float) or not _is_time(ended_at):
        raise ProbeError(f"{where}: an 'ended' line needs a string 'name' and a number 'ended_at'; {_FIX}")
    index = _latest(faults, name, "ended", where)
    faults[index] = replace(faults[index], ended_at=float(ended_at))
    return faults


def _fold_signalled(faults: list[Fault], record: dict[str, Any], where: str) -> list[Fault]:
    unknown = sorted(set(record) - {"event", "name", "injected_at", "uncertainty_seconds"})
    if unknown:
        raise ProbeError(f"{where}: a 'signalled' line has unknown field(s) {', '.join(unknown)}; {_FIX}")
    name, injected_at = record.get("name"), record.get("injected_at")
    if not isinstance(name, str) or not isinstance(injected_at, int | float) or not _is_time(injected_at):
        raise ProbeError(
            f"{where}: a 'signalled' line needs a string 'name' and a number 'injected_at'; {_FIX}"
        )
    uncertainty = record.get("uncertainty_seconds")
    if uncertainty is not None and not (_is_time(uncertainty) and uncertainty >= 0):
        raise ProbeError(
            f"{where}: 'uncertainty_seconds' must be a number of seconds, 0 or more, or null; {_FIX}"
        )
    index = _latest(faults, name, "signalled", where)
    fault = faults[index]
    details = dict(fault.details)
    details.setdefault("recorded_at", fault.injected_at)
    if uncertainty is not None:
        details["injection_uncertainty_seconds"] = float(uncertainty)
    faults[index] = replace(fault, injected_at=float(injected_at), details=details)
    return faults
