"""A soak's folder as written: ``runs/<id>/soak/`` read into a :class:`SoakFolder`.

``plan.json`` (required once the folder exists: the soak writes it first; a missing or
malformed one is a ProbeError naming the fix), ``checks.jsonl`` (one round per line,
``{"kind": "check", "at", "elapsed", "backups", "failed_jobs", "pods", "load",
"errors"}``, and optionally ``"limits"``: measurements this target cannot take at all,
which the report shows and no check counts as a failure), ``drills.jsonl`` (one drill
per line) and ``end.json`` (written only when the soak ran its planned time).

A torn last line of either JSON-lines file (the soak was killed mid-write, or is
writing it now) is skipped; an unreadable line before the last is reported in
``lost``: the round or drill it held is gone, and :mod:`probes.soak_summary` makes it a
``check-error``. Rounds are sorted by their time; a round without one is lost too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import ProbeError
from probes.slopes import DEFAULT_LEAK_PER_HOUR

__all__ = [
    "CHECKS_NAME",
    "DRILLS_NAME",
    "END_NAME",
    "PLAN_NAME",
    "SOAK_DIR",
    "Plan",
    "SoakFolder",
    "duration_text",
    "load_soak",
    "number",
]

SOAK_DIR = "soak"
PLAN_NAME = "plan.json"
CHECKS_NAME = "checks.jsonl"
DRILLS_NAME = "drills.jsonl"
END_NAME = "end.json"


def number(value: Any) -> float | None:
    """A finite number (not a bool) as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def duration_text(seconds: float | None) -> str:
    """``3.20 h (11520 s)``: hours to 2 decimals, the seconds beside them."""
    if seconds is None:
        return "an unknown time"
    return f"{seconds / 3600:.2f} h ({seconds:.0f} s)"


@dataclass(frozen=True)
class Plan:
    """``plan.json``: what the soak set out to do (seconds; ``started_at`` epoch)."""

    seconds: float
    check_seconds: float
    rpo_budget_seconds: float
    started_at: float
    tenants: tuple[str, ...]
    drills: tuple[float, ...]
    faults: tuple[tuple[float, str], ...]
    leak_per_hour: float = DEFAULT_LEAK_PER_HOUR
    log_interval_seconds: float | None = None
    drill_seconds: float = 0.0


def _plan(path: Path) -> Plan:
    fix = "the soak writes it first; rewrite it or remove the soak/ folder"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProbeError(f"{path} is missing: {fix}") from None
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{path} cannot be read ({exc}): {fix}") from None
    if not isinstance(doc, dict):
        raise ProbeError(f"{path} must hold one JSON object: {fix}")
    values: dict[str, float] = {}
    for key in ("seconds", "check_seconds", "rpo_budget_seconds", "started_at"):
        value = number(doc.get(key))
        if value is None or value <= 0:
            raise ProbeError(f"{path}: {key!r} must be a positive number, got {doc.get(key)!r}: {fix}")
        values[key] = value
    drill_seconds = number(doc.get("drill_seconds")) or 0.0
    drills = doc.get("drills")
    if isinstance(drills, list):
        offsets = tuple(float(d) for d in drills if number(d) is not None)
    else:  # the runner's rule: every drill_seconds, strictly inside the soak
        count = int(values["seconds"] // drill_seconds) if drill_seconds > 0 else 0
        offsets = tuple(
            drill_seconds * k for k in range(1, count + 1) if drill_seconds * k < values["seconds"]
        )
    faults = tuple(
        (float(f["at"]), str(f.get("action") or ""))
        for f in doc.get("faults") or []
        if isinstance(f, dict) and number(f.get("at")) is not None
    )
    leak = number(doc.get("leak_per_hour"))
    tenants = doc.get("tenants") or []
    return Plan(
        seconds=values["seconds"],
        check_seconds=values["check_seconds"],
        rpo_budget_seconds=values["rpo_budget_seconds"],
        started_at=values["started_at"],
        tenants=tuple(str(t) for t in tenants) if isinstance(tenants, list) else (),
        drills=offsets,
        faults=faults,
        leak_per_hour=leak if leak is not None and leak > 0 else DEFAULT_LEAK_PER_HOUR,
        log_interval_seconds=number(doc.get("log_interval_seconds")),
        drill_seconds=drill_seconds,
    )


def _lines(path: Path, kind: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``kind`` records of a JSON-lines file, and a sentence per line lost before the last."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"soak/{path.name} cannot be read ({exc.strerror or exc}): every record in it is lost"]
    raw = text.split("\n")
    records: list[dict[str, Any]] = []
    lost: list[str] = []
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if number < len(raw):  # only the last piece, with no newline after it, is a write in progress
                lost.append(
                    f"soak/{path.name} line {number} is not a JSON object: the {kind} it held is lost"
                )
            continue
        if record.get("kind", kind) == kind:
            records.append(record)
    return records, lost


def _end(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@dataclass(frozen=True)
class SoakFolder:
    """Everything in ``soak/``: the plan, the rounds (by time), the drills, ``end.json`` and lost lines."""

    folder: Path
    plan: Plan
    rounds: list[dict[str, Any]]
    drills: list[dict[str, Any]]
    end: dict[str, Any] | None
    lost: list[str]

    @property
    def complete(self) -> bool:
        return self.end is not None

    @property
    def covered_seconds(self) -> float:
        covered = number((self.end or {}).get("covered_seconds"))
        if covered is not None:
            return covered
        elapsed = [e for r in self.rounds if (e := number(r.get("elapsed"))) is not None]
        return max(elapsed, default=0.0)


def load_soak(run_dir: str | Path) -> SoakFolder | None:
    """Read ``run_dir/soak/``; None without that folder. ProbeError for a missing or bad plan.json."""
    folder = Path(run_dir) / SOAK_DIR
    if not folder.is_dir():
        return None
    plan = _plan(folder / PLAN_NAME)
    checks, lost = _lines(folder / CHECKS_NAME, "check")
    drills, lost_drills = _lines(folder / DRILLS_NAME, "drill")
    rounds = [r for r in checks if number(r.get("at")) is not None]
    lost += [
        f"soak/{CHECKS_NAME}: a check round without its time (at) is left out"
        for r in checks
        if r not in rounds
    ]
    rounds.sort(key=lambda r: float(r["at"]))
    return SoakFolder(folder, plan, rounds, drills, _end(folder / END_NAME), lost + lost_drills)
