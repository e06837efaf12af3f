"""The soak's checks, one function per kind, over the rounds of ``soak/checks.jsonl``.

Used by :mod:`probes.soak_summary`, which documents every rule; each function takes
the rounds (``checks.jsonl`` lines sorted by ``at``) and returns what it found, as
violation dicts ``{"check", "at", "text"}``. A condition that holds over consecutive
rounds is one violation for the whole stretch (``group``), so a tenant whose backups
stop for an hour is one line, not sixty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.times import utc_iso
from probes.slopes import judge_slope

__all__ = [
    "ROLES",
    "Flag",
    "PodFindings",
    "Window",
    "backup_ages",
    "drill_findings",
    "failed_job_findings",
    "fault_windows",
    "group",
    "load_findings",
    "pod_findings",
    "slope_findings",
]

ROLES = ("operator", "mssql")

#: (round index, key, round time, value): one round where a condition held for ``key``.
Flag = tuple[int, str, float, Any]
Violation = dict[str, Any]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def group(
    check: str, flags: Iterable[Flag], text: Callable[[str, float, float, int, list[Any]], str]
) -> list[Violation]:
    """One violation per key per stretch of consecutive rounds; ``text(key, first, last, rounds, values)``."""
    by_key: dict[str, list[Flag]] = {}
    for flag in flags:
        by_key.setdefault(flag[1], []).append(flag)
    out: list[Violation] = []

    def close(stretch: list[Flag]) -> None:
        rounds = len({f[0] for f in stretch})
        words = text(stretch[0][1], stretch[0][2], stretch[-1][2], rounds, [f[3] for f in stretch])
        out.append({"check": check, "at": stretch[0][2], "text": words})

    for items in by_key.values():
        items.sort(key=lambda f: f[0])
        stretch = [items[0]]
        for item in items[1:]:
            if item[0] <= stretch[-1][0] + 1:
                stretch.append(item)
            else:
                close(stretch)
                stretch = [item]
        close(stretch)
    return out


def _span(first: float, last: float, rounds: int) -> str:
    if rounds == 1:
        return f"in the round at {utc_iso(first)}"
    return f"in {rounds} consecutive rounds from {utc_iso(first)} to {utc_iso(last)}"


@dataclass(frozen=True)
class Window:
    """A planned fault's window, ``start`` to ``end`` (epoch seconds), and the pod roles it may restart."""

    start: float
    end: float
    roles: frozenset[str]
    what: str

    def covers(self, role: str, after: float | None, until: float) -> bool:
        """Whether a change of a ``role`` pod seen in (``after``, ``until``] may be this fault."""
        return role in self.roles and until >= self.start and (after is None or after < self.end)


def fault_windows(faults: Iterable[tuple[float, float | None, str]], grace: float) -> list[Window]:
    """(injected at, ended at or None, kind or action) → windows to the end plus ``grace``.

    Operator restarts (``restart_operator``, ``operator-restart``) cover the operator's pods,
    pod evictions (``evict_tenant_pod``, ``pod-eviction``) the MSSQL pods, any other fault every pod.
    """
    out = []
    for start, ended, kind in faults:
        if not kind:
            continue  # a plan entry that names no fault excuses nothing
        if "operator" in kind:
            roles = frozenset({"operator"})
        elif "evict" in kind or kind.startswith("pod-"):
            roles = frozenset({"mssql"})
        else:
            roles = frozenset(ROLES)
        out.append(Window(start, max(start, ended or start) + grace, roles, kind or "a fault"))
    return out


def backup_ages(
    rounds: Sequence[dict[str, Any]], tenants: Sequence[str], budget: float, started_at: float
) -> tuple[dict[str, float | None], list[Violation]]:
    """Each tenant's largest log-backup age, and the stretches over ``budget`` or unmeasured."""
    names = list(tenants) or sorted({t for r in rounds for t in _dict(r.get("backups"))})
    ages: dict[str, float | None] = {t: None for t in names}
    over: list[Flag] = []
    unmeasured: list[Flag] = []
    for index, round_ in enumerate(rounds):
        at = float(round_["at"])
        backups = _dict(round_.get("backups"))
        for tenant in names:
            entry = backups.get(tenant)
            if not isinstance(entry, dict):
                unmeasured.append(
                    (index, f"{tenant}: log backup age not measured (missing from the round)", at, None)
                )
                continue
            if entry.get("error"):
                why = f"{tenant}: log backup age not measured: {entry['error']}"
                unmeasured.append((index, why, at, None))
                continue
            age = _num(entry.get("age"))
            if age is None:
                last = _num(entry.get("last_log_end"))
                age = at - (last if last is not None else started_at)
            previous = ages[tenant]
            ages[tenant] = age if previous is None else max(previous, age)
            if age > budget:
                over.append((index, tenant, at, (at, age)))

    def over_text(tenant: str, first: float, last: float, rounds: int, values: list[Any]) -> str:
        when, worst = max(values, key=lambda v: v[1])
        return (
            f"{tenant}: newest log backup older than the {budget:g} s RPO budget "
            f"{_span(first, last, rounds)}, at most {worst:.0f} s (at {utc_iso(when)})"
        )

    def unmeasured_text(why: str, first: float, last: float, rounds: int, _values: list[Any]) -> str:
        return f"{why} ({_span(first, last, rounds)})"

    return ages, group("log-backup-age", over, over_text) + group("check-error", unmeasured, unmeasured_text)


@dataclass
class PodFindings:
    """Restarts per pod (all; those a planned fault explains), violations, each pod's judged series."""

    violations: list[Violation] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)
    series: list[tuple[str, str, str, list[float], list[float | None]]] = field(default_factory=list)
    last_seen: dict[str, float] = field(default_factory=dict)
    roles: set[str] = field(default_factory=set)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _longest(stretches: list[list[tuple[float, Any, Any]]]) -> list[tuple[float, Any, Any]]:
    return max(stretches, key=lambda s: (s[-1][0] - s[0][0], len(s)))


def _change(
    seen: tuple[float, str, int | None] | None,
    first_round: bool,
    role: str,
    uid: str,
    restarts: int | None,
    operator_before: bool,
) -> tuple[int, str]:
    """How many restarts a pod's entry shows since it was last ``seen`` (at, uid, restarts), and how."""
    if seen is None:
        if not first_round and role == "operator" and operator_before:
            return 1 + (restarts or 0), "a new operator pod replaced the one before"
        if not first_round and restarts:
            return restarts, f"a pod first seen with {restarts} container restart(s)"
        return 0, ""
    if uid and seen[1] and uid != seen[1]:
        return 1 + (restarts or 0), f"replaced (uid {seen[1]} → {uid})"
    if restarts is not None and seen[2] is not None and restarts > seen[2]:
        return restarts - seen[2], f"container restarts {seen[2]} → {restarts}"
    return 0, ""


def pod_findings(rounds: Sequence[dict[str, Any]], windows: Sequence[Window]) -> PodFindings:
    """Restarts (uid changes, restart counts rising, a new operator pod), an absent operator, and series."""
    found = PodFindings()
    state: dict[str, tuple[float, str, int | None]] = {}  # pod -> (seen at, uid, restarts)
    role_of: dict[str, str] = {}
    stretches: dict[str, list[list[tuple[float, Any, Any]]]] = {}
    absent: list[Flag] = []
    previous_at: float | None = None
    for index, round_ in enumerate(rounds):
        at = float(round_["at"])
        pods = _dict(round_.get("pods"))
        operator_before = "operator" in found.roles
        for pod, entry in sorted(pods.items()):
            if not isinstance(entry, dict):
                continue
            role, uid, restarts = (
                str(entry.get("role") or "unknown"),
                str(entry.get("uid") or ""),
                _count(entry.get("restarts")),
            )
            found.roles.add(role)
            role_of[pod] = role
            seen = state.get(pod)
            after = previous_at if seen is None else seen[0]
            events, what = _change(seen, index == 0, role, uid, restarts, operator_before)
            pod_stretches = stretches.setdefault(pod, [[]])
            if events:
                found.restarts[pod] = found.restarts.get(pod, 0) + events
                if any(w.covers(role, after, at) for w in windows):
                    found.planned[pod] = found.planned.get(pod, 0) + events
                else:
                    since = f"between {utc_iso(after)} and" if after is not None else "by"
                    found.violations.append(
                        {
                            "check": "restart",
                            "at": at,
                            "text": f"{pod} ({role}) restarted {since} {utc_iso(at)}: {what}",
                        }
                    )
                if pod_stretches[-1]:
                    pod_stretches.append([])
            pod_stretches[-1].append((at, _num(entry.get("memory_bytes")), _num(entry.get("connections"))))
            kept = restarts if restarts is not None or events else (seen[2] if seen else None)
            state[pod] = (at, uid or (seen[1] if seen else ""), kept)
            found.last_seen[pod] = at
        has_operator = any(isinstance(e, dict) and e.get("role") == "operator" for e in pods.values())
        planned = any(w.start <= at <= w.end and "operator" in w.roles for w in windows)
        if operator_before and not has_operator and not round_.get("errors") and not planned:
            absent.append((index, "operator", at, None))
        previous_at = at

    def absent_text(_key: str, first: float, last: float, rounds: int, _values: list[Any]) -> str:
        return f"no operator pod was running {_span(first, last, rounds)}"

    found.violations += group("restart", absent, absent_text)
    for pod in sorted(stretches):
        longest = _longest([s for s in stretches[pod] if s])
        times = [s[0] for s in longest]
        found.series.append((pod, role_of[pod], "memory_bytes", times, [s[1] for s in longest]))
        found.series.append((pod, role_of[pod], "connections", times, [s[2] for s in longest]))
    return found


#: The smallest total rise that can be a leak, per metric: a PostgreSQL or SQL Server filling its
#: buffer cache rises steadily by a few MiB in a short soak; a pool opening its connections by a few.
MIN_RISE = {"memory_bytes": 32.0 * 1024 * 1024, "connections": 5.0}


def slope_findings(pods: PodFindings, leak_per_hour: float) -> tuple[list[dict[str, Any]], list[Violation]]:
    """Each pod series judged (:func:`probes.slopes.judge_slope`), and a violation per leak."""
    slopes: list[dict[str, Any]] = []
    violations: list[Violation] = []
    for pod, role, metric, times, values in pods.series:
        slope = judge_slope(times, values, leak_per_hour, MIN_RISE.get(metric, 0.0))
        slopes.append(
            {
                "pod": pod,
                "role": role,
                "metric": metric,
                "per_hour": slope.per_hour,
                "first_floor": slope.first_floor,
                "leak": slope.leak,
                "samples": slope.samples,
                "span_seconds": (max(times) - min(times)) if times else 0.0,
                "reason": slope.reason,
            }
        )
        if slope.leak:
            memory = metric == "memory_bytes"
            text = f"{pod} ({role}) {'memory' if memory else 'open connections'}: {slope.reason}"
            violations.append(
                {
                    "check": "memory-leak" if memory else "connection-leak",
                    "at": pods.last_seen.get(pod),
                    "text": text,
                }
            )
    return slopes, violations


def failed_job_findings(
    rounds: Sequence[dict[str, Any]], started_at: float | None = None
) -> tuple[list[str], list[Violation]]:
    """Every failed backup Job once per backup (its ``backup``, else namespace/name): names and violations.

    A Job that failed before the soak started (``failed_at`` earlier than ``started_at``) is
    not the soak's: an earlier run's failure, or an alerting drill's on purpose. One whose
    failure time is unknown counts.
    """
    seen: dict[str, tuple[dict[str, Any], float]] = {}
    for round_ in rounds:
        jobs = round_.get("failed_jobs")
        for job in jobs if isinstance(jobs, list) else []:
            failed_at = _num(job.get("failed_at")) if isinstance(job, dict) else None
            if started_at is not None and failed_at is not None and failed_at < started_at:
                continue
            if isinstance(job, dict):
                namespace = job.get("namespace") or "?"
                key = f"{namespace}/{job.get('backup') or job.get('name') or '?'}"
                seen.setdefault(key, (job, float(round_["at"])))
    violations: list[Violation] = []
    for job, first_seen in seen.values():
        name = f"{job.get('namespace') or '?'}/{job.get('name') or '?'}"
        kind = "backup" if job.get("kind") == "MSSQLBackup" else "backup Job"
        reason = job.get("reason") or "no reason recorded"
        violations.append(
            {
                "check": "failed-backup-job",
                "at": _num(job.get("failed_at")) or first_seen,
                "text": f"{kind} {name} failed: {reason}",
            }
        )
    return sorted({str(job.get("name") or "?") for job, _ in seen.values()}), violations


def load_findings(
    rounds: Sequence[dict[str, Any]], tenants: Sequence[str], check_seconds: float, windows: Sequence[Window]
) -> list[Violation]:
    """``no-acks`` per tenant per stretch of rounds, and tenants missing from a round's load."""
    names = list(tenants) or sorted({t for r in rounds for t in _dict(r.get("load"))})
    silent: list[Flag] = []
    unmeasured: list[Flag] = []
    previous: float | None = None
    for index, round_ in enumerate(rounds):
        at = float(round_["at"])
        interval = check_seconds if previous is None else at - previous
        load = _dict(round_.get("load"))
        judged = interval >= check_seconds / 2 and not any(w.covers("mssql", previous, at) for w in windows)
        for tenant in names:
            entry = load.get(tenant)
            acks = _num(entry.get("acks")) if isinstance(entry, dict) else None
            entry = _dict(entry)
            if acks is None:
                unmeasured.append(
                    (index, f"{tenant}: acknowledged writes not measured (missing from the round)", at, None)
                )
            elif acks == 0 and judged:
                failed = (_num(entry.get("fails")) or 0) + (_num(entry.get("infos")) or 0)
                silent.append((index, tenant, at, failed))
        previous = at

    def silent_text(tenant: str, first: float, last: float, rounds: int, values: list[Any]) -> str:
        return (
            f"{tenant}: no acknowledged write {_span(first, last, rounds)} "
            f"({sum(values):.0f} failed or unknown-outcome attempts)"
        )

    def unmeasured_text(why: str, first: float, last: float, rounds: int, _values: list[Any]) -> str:
        return f"{why} ({_span(first, last, rounds)})"

    return group("no-acks", silent, silent_text) + group("check-error", unmeasured, unmeasured_text)


def drill_findings(
    drills: Sequence[dict[str, Any]], planned: int, complete: bool
) -> tuple[dict[str, int], list[Violation]]:
    """The drills block ``{"planned", "run", "validated", "failed"}`` and the drills that went wrong."""
    violations: list[Violation] = []
    validated = 0
    for number, drill in enumerate(drills, start=1):
        result = drill.get("result")
        problems = (
            [str(p) for p in drill.get("problems") or []] if isinstance(drill.get("problems"), list) else []
        )
        at = _num(drill.get("ended_at")) or _num(drill.get("started_at"))
        what = (
            f"drill {number} ({drill.get('tenant') or '?'} into {drill.get('target') or '?'}, "
            f"to {drill.get('target_time') or 'no moment'})"
        )
        if result == "validated":
            validated += 1
            if problems:
                violations.append(
                    {"check": "drill", "at": at, "text": f"{what} validated, but: {'; '.join(problems)}"}
                )
            continue
        why = "; ".join(problems) or "no reason recorded"
        violations.append({"check": "drill", "at": at, "text": f"{what} {result or 'has no result'}: {why}"})
    if complete and len(drills) < planned:
        violations.append(
            {
                "check": "drill",
                "at": None,
                "text": f"{planned - len(drills)} of {planned} planned drill(s) never ran",
            }
        )
    block = {
        "planned": planned,
        "run": len(drills),
        "validated": validated,
        "failed": len(drills) - validated,
    }
    return block, violations
