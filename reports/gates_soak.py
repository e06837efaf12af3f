"""The soak gate ``soak-24h``: a long run with periodic log backups, checked all along.

**What counts.** Only a *soak*: a run whose summary has a ``soak`` block
(:func:`probes.soak_summary.summarize`, written by ``experiments/opt-in/soak.json``). A plain
run of 24 hours does not: the checklist line is a soak *with periodic log backups*, and
only a soak checks the backup age, failed backup Jobs, restarts, leaks and drills the
whole time; a long run without those checks proves only that the load ran.

**Per soak.**

- Violations (the block's ``violations``), a soak that did not finish its planned time
  (``complete`` false: killed, or still running) or the run's own problems
  (``run_problems``: lost writes, an RTO over the objective, a failed experiment) FAIL
  the gate, each named. An incomplete soak is never a PASS. The run's verdict may repeat
  the soak's violations (``soak: ...``, ``soak incomplete: ...``): they are named once.
- A clean soak (complete, no violation, no problem) of at least 24 hours PASSes.
- A clean soak on a target that is not a real cluster (the embedded lab) PASSes at any
  length, with the evidence "lab only, 0.05 h": :func:`reports.gates.judge` turns such
  a PASS into ``PASS (lab only)``, which cannot make the document GO.
- A clean soak on a real cluster shorter than 24 hours leaves the gate NOT RUN:
  "longest soak 3.20 h of the 24 h required".

The evidence always names the longest soak (covered hours), and for every soak its
backup-age maximum against the RPO budget, its drills (validated of run, and planned)
and its slopes (the leaks named, and how many series had no verdict).
"""

from __future__ import annotations

from typing import Any

from reports.gate_base import FAIL, NOT_RUN, PASS, Decide, GateContext, Verdict, combine, registrar
from reports.gonogo_runs import Run, as_dict, dicts, number, run_problems

__all__ = ["GATES", "SOAK_SECONDS", "soak_block"]

SOAK_SECONDS = 24 * 3600.0
#: How ``reports.build`` words the soak's findings in the run's violations (left out here: the
#: soak block names them already).
SOAK_PROBLEM_PREFIXES = ("soak: ", "soak incomplete: ")
SHOWN_VIOLATIONS = 20

GATES: dict[str, Decide] = {}
_gate = registrar(GATES)


def soak_block(run: Run) -> dict[str, Any] | None:
    """The run's ``soak`` summary block, or None when the run is no soak."""
    block = run.summary.get("soak")
    return block if isinstance(block, dict) else None


def _hours(seconds: float | None) -> str:
    return "? h" if seconds is None else f"{seconds / 3600:.2f} h"


def _covered(block: dict[str, Any]) -> float:
    return number(block.get("covered_seconds")) or 0.0


def _backup_text(block: dict[str, Any]) -> str:
    worst = number(block.get("backup_age_max_seconds"))
    budget = number(block.get("rpo_budget_seconds"))
    ages = {t: number(a) for t, a in as_dict(block.get("backup_age_max")).items()}
    budget_text = f" (RPO budget {budget:g} s)" if budget is not None else ""
    if worst is None:
        return f"backup age max cannot tell{budget_text}"
    tenant = max((t for t, a in ages.items() if a is not None), key=lambda t: ages[t] or 0.0, default=None)
    where = f" ({tenant})" if tenant else ""
    unknown = [t for t, a in ages.items() if a is None]
    missing = f"; not measured for {', '.join(unknown)}" if unknown else ""
    return f"backup age max {worst:.0f} s{where}{budget_text}{missing}"


def _drills_text(block: dict[str, Any]) -> str:
    drills = as_dict(block.get("drills"))
    run, validated = int(number(drills.get("run")) or 0), int(number(drills.get("validated")) or 0)
    planned = int(number(drills.get("planned")) or 0)
    return f"drills {validated} of {run} run validated ({planned} planned)"


def _slopes_text(block: dict[str, Any]) -> str:
    slopes = dicts(block.get("slopes"))
    judged = [s for s in slopes if isinstance(s.get("leak"), bool)]
    leaks = [s for s in judged if s.get("leak") is True]
    unjudged = len(slopes) - len(judged)
    named = ", ".join(
        f"{s.get('pod')} {'memory' if s.get('metric') == 'memory_bytes' else 'connections'}" for s in leaks
    )
    text = f"slopes {len(judged)} judged, " + (f"leaks: {named}" if leaks else "no leak")
    return text + (f", {unjudged} without a verdict" if unjudged else "")


def _where(run: Run, block: dict[str, Any]) -> str:
    """``on the cluster``, or ``lab only, 0.05 h`` (``not on a real cluster (...), 0.05 h``)."""
    if run.target.production:
        return "on the cluster"
    hours = _hours(_covered(block))
    if run.target.kind == "lab":
        return f"lab only, {hours}"
    return f"not on a real cluster ({run.target.short}), {hours}"


def _detail(ctx: GateContext, run: Run, block: dict[str, Any], state: str) -> str:
    """One line: the soak, where and how long it ran, its backup age, drills and slopes."""
    covered = _covered(block)
    where = _where(run, block)
    planned = _hours(number(block.get("planned_seconds")))
    return (
        f"{ctx.link(run)}: {state} soak, {where} ({_hours(covered)} of {planned} planned): "
        f"{_backup_text(block)}; {_drills_text(block)}; {_slopes_text(block)}"
    )


def _problems(run: Run, block: dict[str, Any]) -> list[str]:
    """Why this soak fails: its violations (the first ones), incompleteness, the run's other problems."""
    violations = [str(v.get("text")) for v in dicts(block.get("violations"))]
    out = violations[:SHOWN_VIOLATIONS]
    if len(violations) > SHOWN_VIOLATIONS:
        out.append(f"and {len(violations) - SHOWN_VIOLATIONS} more violation(s) (see summary.json `soak`)")
    if block.get("complete") is not True:
        reason = block.get("incomplete_reason") or "no end.json: killed or still running"
        out.append(f"incomplete: {reason}; an incomplete soak is never a pass")
    out += [p for p in run_problems(run) if not p.startswith(SOAK_PROBLEM_PREFIXES)]
    return out


def _judge_soak(ctx: GateContext, run: Run, block: dict[str, Any]) -> Verdict:
    problems = _problems(run, block)
    if problems:
        return FAIL, [*(f"{ctx.link(run)}: {p}" for p in problems), _detail(ctx, run, block, "failed")]
    covered = _covered(block)
    detail = _detail(ctx, run, block, "clean")
    drills = as_dict(block.get("drills"))
    planned, validated = number(drills.get("planned")) or 0, number(drills.get("validated")) or 0
    if planned < 1 or validated < planned:
        # A soak without a validated restore drill says nothing about restoring: not a pass.
        return NOT_RUN, [f"{ctx.link(run)}: no restore drill was planned and validated in this soak", detail]
    if covered >= SOAK_SECONDS or not run.target.production:
        return PASS, [detail]
    return NOT_RUN, [detail]


def _longest(soaks: list[tuple[Run, dict[str, Any]]]) -> tuple[Run, dict[str, Any]] | None:
    return max(soaks, key=lambda s: _covered(s[1]), default=None)


@_gate("soak-24h")
def _soak(ctx: GateContext) -> Verdict:
    soaks = [(run, block) for run in ctx.runs if (block := soak_block(run)) is not None]
    if not soaks:
        durations = [d for r in ctx.runs if (d := r.duration) is not None]
        longest = f"longest run {_hours(max(durations))}; " if durations else ""
        return NOT_RUN, [
            f"no soak run ({longest}only a run of experiments/opt-in/soak.json, with its `soak` block, "
            "counts: "
            "a plain run checks no log backups)"
        ]
    parts = [_judge_soak(ctx, run, block) for run, block in soaks]
    cluster = _longest([(r, b) for r, b in soaks if r.target.production])
    if cluster is not None:
        run, block = cluster
        head = (
            f"longest soak {_hours(_covered(block))} of the 24 h required, on the cluster ({ctx.link(run)})"
        )
    else:
        run, block = max(soaks, key=lambda s: _covered(s[1]))  # soaks is not empty
        head = (
            f"longest soak: {_where(run, block)} ({ctx.link(run)}); none on a real cluster, "
            "where 24 h are required"
        )
    status, evidence = combine(parts, (NOT_RUN, []))
    return status, [head, *evidence]
