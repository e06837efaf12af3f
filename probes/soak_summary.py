"""A soak's judgement: ``summarize(run_dir)`` turns ``runs/<id>/soak/`` into summary.json's ``soak`` block.

The folder is read by :mod:`probes.soak_folder` (torn last lines skipped, lost lines
reported); the checks are :mod:`probes.soak_judges`. The block::

    {"planned_seconds", "covered_seconds", "complete", "incomplete_reason", "checks",
     "started_at", "ended_at", "check_seconds", "rpo_budget_seconds", "leak_per_hour",
     "backup_age_max_seconds", "backup_age_max": {tenant: s | null},
     "failed_backup_jobs": [names], "restarts": {pod: n}, "restarts_planned": {pod: n},
     "restart_grace": {"seconds", "from"}, "limits": [text],
     "slopes": [{"pod", "role", "metric", "per_hour", "first_floor", "leak", "samples",
                 "span_seconds", "reason"}],
     "drills": {"planned", "run", "validated", "failed"},
     "violations": [{"check", "at", "text"}]}

A slope without a verdict (too few samples, never measured) has ``per_hour``,
``first_floor`` and ``leak`` null and says why in ``reason``.

**Violations** (``at`` epoch seconds, or null when the finding has no one moment):

- ``log-backup-age``: a tenant's newest log backup older than ``rpo_budget_seconds``,
  one violation per stretch of consecutive rounds over the budget, with its maximum. A
  tenant without a log backup yet counts its age from the soak's start.
- ``failed-backup-job``: every failed backup Job, once per backup (a Job and, after it
  is gone, its failed MSSQLBackup are one failure).
- ``restart``: a pod's restart count rising or its uid changing between rounds (an MSSQL
  pod keeps its name when it is replaced; an operator pod does not, so a new operator
  pod after the first round is a restart too), and rounds with no operator pod where
  one ran before. A restart a planned fault explains is no violation (it is counted in
  ``restarts`` and ``restarts_planned``): the change must fall in the fault's window,
  from its injection to its end plus a grace, the run's RTO objective (``run.json``),
  or 120 s when the run records none (``restart_grace`` says which). The windows are
  the faults of ``faults.jsonl`` and the plan's fault times; ``restart_operator``
  covers the operator's pods, ``evict_tenant_pod`` the MSSQL pods, any other every pod.
- ``memory-leak`` / ``connection-leak``: :mod:`probes.slopes` on each pod's series; a
  restart splits a series, and the longest uninterrupted stretch is judged.
- ``drill``: a drill not ``validated`` (or whose target could not be deleted), and, in a
  complete soak, planned drills (plan.json ``drills``) that never ran.
- ``no-acks``: a tenant without an acknowledged write over a round (one per stretch);
  rounds shorter than half a check interval, and rounds in the window of a fault that
  covers the MSSQL pods, are not judged.
- ``check-error``: a measurement a round could not take (its ``errors``, a tenant's
  backup ``error``, a tenant missing from ``backups`` or ``load``: one per stretch of
  the same text), no round for ``max(3 x check_seconds, check_seconds + 60)``, a lost
  line, an unreadable ``faults.jsonl``. In a complete soak also: no operator or no MSSQL
  pod ever seen, or no series that could judge the memory of a role or the MSSQL pods'
  connections. A check never measured is never a pass. A round's ``limits`` (what the
  target cannot measure at all, such as the operator's connections on a cluster) are
  listed in ``limits`` and are no violation; a series they leave empty has no verdict.

**Incomplete**: without ``end.json``, ``complete`` is false and ``incomplete_reason``
says "the soak stopped after X of Y (no end.json): killed or still running";
``covered_seconds`` is the last round's ``elapsed`` (else end.json's).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.times import utc_iso
from probes.errors import ProbeError
from probes.faultlog import FAULT_LOG_NAME, read_faults
from probes.soak_folder import SoakFolder, duration_text, load_soak, number
from probes.soak_judges import (
    ROLES,
    Window,
    backup_ages,
    drill_findings,
    failed_job_findings,
    fault_windows,
    group,
    load_findings,
    pod_findings,
    slope_findings,
)

__all__ = ["CHECKS", "DEFAULT_GRACE_SECONDS", "summarize"]

RUN_META_NAME = "run.json"
DEFAULT_GRACE_SECONDS = 120.0
CHECKS = (
    "log-backup-age",
    "failed-backup-job",
    "restart",
    "memory-leak",
    "connection-leak",
    "drill",
    "no-acks",
    "check-error",
)


def _grace(run_dir: Path) -> tuple[float, str]:
    try:
        doc = json.loads((run_dir / RUN_META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    objective = doc.get("objective") if isinstance(doc, dict) else None
    rto = number(objective.get("rto_seconds")) if isinstance(objective, dict) else None
    if rto is not None and rto > 0:
        return rto, f"the run's RTO objective ({rto:g} s, run.json)"
    return (
        DEFAULT_GRACE_SECONDS,
        f"the default {DEFAULT_GRACE_SECONDS:g} s (run.json records no RTO objective)",
    )


def _windows(run_dir: Path, soak: SoakFolder, grace: float) -> tuple[list[Window], list[str]]:
    recorded: list[tuple[float, float | None, str]] = []
    planned: list[tuple[float, float | None, str]] = [
        (soak.plan.started_at + at, None, action) for at, action in soak.plan.faults
    ]
    problems: list[str] = []
    try:
        recorded = [(f.injected_at, f.ended_at, f.kind) for f in read_faults(run_dir / FAULT_LOG_NAME)]
    except ProbeError as exc:
        problems.append(f"{exc}: restarts are judged against the planned fault times only")
    return fault_windows(recorded + planned, grace), problems


def _gaps(soak: SoakFolder) -> list[dict[str, Any]]:
    """A check-error per stretch longer than the allowed gap without a round."""
    plan = soak.plan
    limit = max(3 * plan.check_seconds, plan.check_seconds + 60.0)
    times = [plan.started_at, *(float(r["at"]) for r in soak.rounds)]
    ended = number((soak.end or {}).get("ended_at"))
    if ended is not None:
        times.append(ended)
    out = []
    for a, b in itertools.pairwise(times):
        if b - a > limit:
            out.append(
                {
                    "check": "check-error",
                    "at": a,
                    "text": f"no check round from {utc_iso(a)} to {utc_iso(b)} ({b - a:.0f} s; one every "
                    f"{plan.check_seconds:g} s): that stretch was not measured",
                }
            )
    return out


def _round_errors(soak: SoakFolder, windows: Sequence[Window] = ()) -> list[dict[str, Any]]:
    """Measurements that failed, one violation per stretch; none inside a planned fault's window
    (an evicted pod has no process and no metrics sample until it is back: the fault's own
    recovery is judged by the run's RTO, and the pod's restart by its window)."""
    flagged: list[tuple[int, str, float, str]] = []
    for index, round_ in enumerate(soak.rounds):
        at = float(round_["at"])
        if any(w.start <= at <= w.end for w in windows):
            continue
        errors = round_.get("errors") or []
        for error in errors if isinstance(errors, list) else [f"errors is not a list: {errors!r}"]:
            flagged.append((index, str(error), float(round_["at"]), str(error)))
    return group("check-error", flagged, lambda text, first, last, n, _v: _stretch(text, first, last, n))


def _stretch(text: str, first: float, last: float, count: int) -> str:
    if count == 1:
        return f"{text} (round at {utc_iso(first)})"
    return f"{text} ({count} rounds from {utc_iso(first)} to {utc_iso(last)})"


def _coverage(slopes: list[dict[str, Any]], roles: set[str]) -> list[dict[str, Any]]:
    """In a complete soak: a role never seen, or a needed series no pod could judge."""
    out = []
    for role in ROLES:
        if role not in roles:
            out.append(
                f"no {role} pod was seen in any check round: "
                "its restarts, memory and connections went unmeasured"
            )
            continue
        for metric in ("memory_bytes", "connections") if role == "mssql" else ("memory_bytes",):
            if not any(s["role"] == role and s["metric"] == metric and s["leak"] is not None for s in slopes):
                what = "memory" if metric == "memory_bytes" else "open connections"
                out.append(
                    f"cannot tell whether the {role} pods leak {what}: no pod's series could be judged"
                )
    return [{"check": "check-error", "at": None, "text": t} for t in out]


def _limits(soak: SoakFolder) -> list[str]:
    found: set[str] = set()
    for round_ in soak.rounds:
        limits = round_.get("limits")
        found.update(str(x) for x in (limits if isinstance(limits, list) else []))
    return sorted(found)


def _incomplete(covered: float, planned: float) -> str:
    return (
        f"the soak stopped after {duration_text(covered)} of {duration_text(planned)} (no end.json): "
        "killed or still running"
    )


def summarize(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``soak`` block of summary.json (see the module docstring); None when there is no soak/ folder.

    ProbeError (one line, with the fix) when ``soak/plan.json`` is missing or malformed.
    """
    run_dir = Path(run_dir)
    soak = load_soak(run_dir)
    if soak is None:
        return None
    plan = soak.plan
    grace, grace_from = _grace(run_dir)
    windows, problems = _windows(run_dir, soak, grace)
    violations = [{"check": "check-error", "at": None, "text": t} for t in soak.lost + problems]
    violations += _gaps(soak) + _round_errors(soak, windows)
    ages, found = backup_ages(soak.rounds, plan.tenants, plan.rpo_budget_seconds, plan.started_at)
    violations += found
    failed_jobs, found = failed_job_findings(soak.rounds, plan.started_at)
    violations += found
    pods = pod_findings(soak.rounds, windows)
    slopes, found = slope_findings(pods, plan.leak_per_hour)
    violations += pods.violations + found
    violations += load_findings(soak.rounds, plan.tenants, plan.check_seconds, windows)
    drills, found = drill_findings(soak.drills, len(plan.drills), soak.complete)
    violations += found
    if soak.complete:
        violations += _coverage(slopes, pods.roles)
    violations.sort(key=lambda v: (v["at"] is None, v["at"] or 0.0))
    known = [a for a in ages.values() if a is not None]
    covered = soak.covered_seconds
    return {
        "planned_seconds": plan.seconds,
        "covered_seconds": covered,
        "complete": soak.complete,
        "incomplete_reason": None if soak.complete else _incomplete(covered, plan.seconds),
        "checks": len(soak.rounds),
        "started_at": plan.started_at,
        "ended_at": number((soak.end or {}).get("ended_at")),
        "check_seconds": plan.check_seconds,
        "rpo_budget_seconds": plan.rpo_budget_seconds,
        "leak_per_hour": plan.leak_per_hour,
        "backup_age_max_seconds": max(known) if known else None,
        "backup_age_max": ages,
        "failed_backup_jobs": failed_jobs,
        "restarts": pods.restarts,
        "restarts_planned": pods.planned,
        "restart_grace": {"seconds": grace, "from": grace_from},
        "limits": _limits(soak),
        "slopes": slopes,
        "drills": drills,
        "violations": violations,
    }
