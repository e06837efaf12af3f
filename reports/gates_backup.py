"""The backup and restore gates, decided from ``pitr-restore`` and ``backup-under-chaos`` runs.

Their summaries carry ``pitr`` (``reports.build`` copies it from ``pitr.json``)::

    "pitr": {
      "backup":     {"policy_ready": bool, "full": {"ok": bool, "name"} | bool,
                     "log": {"ok": bool, "name"} | bool, "error": str,
                     "chain": {"full": int, "log": int, "earliest_restorable": str,
                               "latest_restorable": str, "checked": str,
                               "gaps": [{"after", "before", "from", "to", "seconds"}]}},
      "restore":    {"ok": bool, "target": str, "target_time": str,
                     "create_target": bool, "error": str, "fallback": str},
      "validation": {"ok": bool, "missing": int, "extra": int,
                     "restore_point_error_seconds": float},
      "precondition": {"ok": bool, "target": str, "phase": str, "reason": str,
                       "target_created": bool, "jobs_created": [str], "problems": [str]}}

Only runs of those two experiments count: another run's ``pitr`` block was not made
under the conditions the gate means. A missing key leaves its gate NOT RUN for that run;
``ok: false`` (or ``policy_ready: false``) is a FAIL. The full/log backup gate cites the
backup chain (``probes.k8s.backup_chain``): a gap in it is a FAIL, with its start and
end, because a chain with a hole cannot restore to every moment; so is a chain that
restores nothing. The restore gate cites a failed restore's reason as the operator
reported it (the executor's FATAL line, the checksum mismatch) and notes a restore that
fell back to an older full backup. Validation passes only when ``ok``
is true and ``missing`` and ``extra`` are both 0; the restore point error is reported.
The restore-target constraint passes from ``precondition``
(``probes.k8s.restore_precondition``): a restore into a missing instance without
createTarget was refused with a reason and nothing was created. The problems of the
run that exercises a gate (``run_problems``: restore for ``pitr-restore``, backups for
``backup-under-chaos``) FAIL it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reports.gate_base import (
    FAIL,
    MANUAL,
    NOT_RUN,
    PASS,
    Decide,
    GateContext,
    Verdict,
    combine,
    flag_gate,
    problems_of,
    registrar,
)
from reports.gonogo_runs import BACKUP_KINDS, EVIDENCE_DIR, OPERATOR_LOG, SUMMARY_NAME, Run, as_dict, number

__all__ = ["GATES"]

GATES: dict[str, Decide] = {}
_gate = registrar(GATES)


def _backup_runs(ctx: GateContext) -> list[Run]:
    return [r for r in ctx.runs if r.fault in BACKUP_KINDS]


def _pitr(run: Run, part: str) -> dict[str, Any] | None:
    block = as_dict(run.summary.get("pitr")).get(part)
    return block if isinstance(block, dict) else None


def _ok_of(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    ok = as_dict(value).get("ok")
    return ok if isinstance(ok, bool) else None


def _error(block: dict[str, Any]) -> str:
    return f" ({block['error']})" if block.get("error") else ""


def _pitr_gate(gate_id: str, part: str, home: str | None, judge: Callable[[dict[str, Any]], Verdict]) -> None:
    """Register a gate judging ``pitr[part]`` of every backup/restore run; ``home`` runs' problems FAIL it."""

    @_gate(gate_id)
    def decide(ctx: GateContext) -> Verdict:
        runs = _backup_runs(ctx)
        if not runs:
            return NOT_RUN, ["no pitr-restore or backup-under-chaos run"]
        parts: list[Verdict] = []
        for run in runs:
            block = _pitr(run, part)
            if block is None:
                parts.append((NOT_RUN, [f"{ctx.link(run)} ({run.fault}) recorded no `pitr.{part}` results"]))
                continue
            status, evidence = judge(block)
            parts.append((status, [f"{ctx.link(run)}: {e}" for e in evidence]))
        parts += problems_of(ctx, [r for r in runs if r.fault == home])
        return combine(parts, (NOT_RUN, []))


def _judge_policy(block: dict[str, Any]) -> Verdict:
    ready = block.get("policy_ready")
    if not isinstance(ready, bool):
        return NOT_RUN, ["`pitr.backup.policy_ready` not recorded"]
    return (
        (PASS, ["MSSQLBackupPolicy Ready"])
        if ready
        else (FAIL, [f"MSSQLBackupPolicy not Ready{_error(block)}"])
    )


def _judge_backups(block: dict[str, Any]) -> Verdict:
    parts: list[Verdict] = []
    for kind in ("full", "log"):
        ok = _ok_of(block.get(kind))
        name = as_dict(block.get(kind)).get("name")
        label = f"{kind} backup{f' {name}' if name else ''}"
        if ok is None:
            parts.append((NOT_RUN, [f"{label}: not recorded"]))
        else:
            parts.append((PASS, [f"{label} completed"]) if ok else (FAIL, [f"{label} failed{_error(block)}"]))
    if any(p[0] == NOT_RUN for p in parts) and not any(p[0] == FAIL for p in parts):
        return NOT_RUN, [e for p in parts for e in p[1]]
    status, evidence = combine(parts, (NOT_RUN, []))
    chain = _judge_chain(block.get("chain"))
    if chain is None:
        return status, [*evidence, "backup chain not recorded (the `backup_chain` probe did not run)"]
    return combine([(status, evidence), chain], (NOT_RUN, []))


def _judge_chain(chain: Any) -> Verdict | None:
    """``pitr.backup.chain``: FAIL for each gap (or a chain that restores nothing); None when absent."""
    if not isinstance(chain, dict):
        return None
    earliest, latest = chain.get("earliest_restorable"), chain.get("latest_restorable")
    span = (
        f"{chain.get('full', '?')} full + {chain.get('log', '?')} log backup(s), "
        f"restorable from {earliest or 'nowhere'} to {latest or 'nowhere'}"
    )
    checked = f" ({chain['checked']})" if chain.get("checked") else ""
    gaps = chain.get("gaps")
    holes = []
    if isinstance(gaps, list):
        holes = [
            f"backup chain has a gap from {g.get('from')} to {g.get('to')} ({g.get('seconds')} s, "
            f"after {g.get('after')}, before {g.get('before')}): a chain with a hole cannot restore "
            "to every moment"
            for g in gaps
            if isinstance(g, dict)
        ]
    elif isinstance(gaps, int | float) and not isinstance(gaps, bool) and gaps > 0:
        holes = [f"backup chain has {int(gaps)} gap(s): a chain with a hole cannot restore to every moment"]
    if holes:
        return FAIL, [*holes, f"backup chain: {span}{checked}"]
    if not latest:
        return FAIL, [f"backup chain restores nothing: {span}{checked}"]
    return PASS, [f"backup chain: {span}, no gap{checked}"]


def _judge_restore(block: dict[str, Any]) -> Verdict:
    ok = block.get("ok")
    where = f" to {block['target']}" if block.get("target") else ""
    when = f" at {block['target_time']}" if block.get("target_time") else ""
    if not isinstance(ok, bool):
        return NOT_RUN, ["`pitr.restore.ok` not recorded"]
    fallback = f" ({block['fallback']})" if block.get("fallback") else ""
    if ok:
        return PASS, [f"restore{where}{when} completed{fallback}"]
    return FAIL, [f"restore{where}{when} failed{_error(block)}{fallback}"]


def _judge_validation(block: dict[str, Any]) -> Verdict:
    ok = block.get("ok")
    missing = number(block.get("missing"))
    extra = number(block.get("extra"))
    error = number(block.get("restore_point_error_seconds"))
    counts = (
        f"missing {'?' if missing is None else int(missing)}, extra {'?' if extra is None else int(extra)}, "
        f"restore point error {'cannot tell' if error is None else f'{error:.2f} s'}"
    )
    if not isinstance(ok, bool):
        return NOT_RUN, [f"`pitr.validation.ok` not recorded ({counts})"]
    if ok and missing == 0 and extra == 0:
        return PASS, [f"target matches the targetTime window ({counts})"]
    return FAIL, [f"data validation failed ({counts})"]


_pitr_gate("backup-policy-ready", "backup", None, _judge_policy)
_pitr_gate("full-log-backups", "backup", "backup-under-chaos", _judge_backups)
_pitr_gate("pitr-restore-completes", "restore", "pitr-restore", _judge_restore)
_pitr_gate("pitr-data-validation", "validation", None, _judge_validation)


@_gate("restore-target-exists")
def _restore_target_exists(ctx: GateContext) -> Verdict:
    """``pitr.precondition``: a restore into a missing target without createTarget was refused."""
    parts: list[Verdict] = []
    for run in _backup_runs(ctx):
        block = _pitr(run, "precondition")
        if block is not None:
            status, evidence = _judge_precondition(block)
            parts.append((status, [f"{ctx.link(run)}: {e}" for e in evidence]))
    return combine(
        parts,
        (NOT_RUN, ["no run asked for a restore into a missing target (pitr-restore's precondition step)"]),
    )


def _judge_precondition(block: dict[str, Any]) -> Verdict:
    ok = block.get("ok")
    target = block.get("target") or "?"
    if not isinstance(ok, bool):
        return NOT_RUN, ["`pitr.precondition.ok` not recorded"]
    if ok:
        took = number(block.get("seconds"))
        after = f" after {took:.1f} s" if took is not None else ""
        return PASS, [
            f"restore into missing {target} without createTarget refused{after} "
            f"(phase {block.get('phase') or '?'}: {block.get('reason')}); no target, no Job created"
        ]
    problems: list[Any] = block["problems"] if isinstance(block.get("problems"), list) else []
    why = "; ".join(map(str, problems)) or "not refused"
    return FAIL, [f"restore into missing {target} without createTarget: {why}"]


_gate("backup-integrity-job")(
    flag_gate("integrity", "integrity job", "planned: no run recorded an `integrity` block")
)


@_gate("validation-outputs")
def _validation_outputs(ctx: GateContext) -> Verdict:
    runs = [r for r in _backup_runs(ctx) if _pitr(r, "validation") is not None]
    if not runs:
        return NOT_RUN, ["no restore run recorded `pitr.validation`"]
    return PASS, [
        f"{ctx.link(r, SUMMARY_NAME, f'{r.run_id}/summary.json')} (`pitr.validation`)" for r in runs
    ]


@_gate("operator-logs")
def _operator_logs(ctx: GateContext) -> Verdict:
    """The backup and restore runs' operator logs: a log is attached when it holds lines from an
    operator pod. kubectl's "No resources found" (a wrong operator namespace or selector), its
    errors, or an empty file are not a log."""
    backups = _backup_runs(ctx)
    if not backups:
        return NOT_RUN, ["no backup or restore run: no backup/restore window has an operator log"]
    lines = {r.run_id: r.operator_log_lines() for r in backups}
    lacking = [r for r in backups if lines[r.run_id] == 0]
    if lacking:
        return FAIL, [f"{ctx.link(r)} ({r.fault}): {_no_operator_log(r)}" for r in lacking]
    return PASS, [
        ctx.link(r, f"{EVIDENCE_DIR}/{OPERATOR_LOG}", f"{r.run_id}/operator.log")
        + f" ({lines[r.run_id]} line{'' if lines[r.run_id] == 1 else 's'})"
        for r in backups
    ]


def _no_operator_log(run: Run) -> str:
    """Why ``evidence/operator.log`` of ``run`` holds no line from an operator pod, and the fix."""
    path = run.evidence(OPERATOR_LOG)
    if not path.is_file():
        return f"no evidence/{OPERATOR_LOG}"
    said = path.read_text(errors="replace").strip()
    if not said:
        return (
            f"evidence/{OPERATOR_LOG} is empty: the operator pods logged nothing in the run window "
            "(or have no log): no evidence of what the operator did"
        )
    first = said.splitlines()[0][:160]
    if first.startswith("No resources found"):
        return (
            f"evidence/{OPERATOR_LOG} holds no operator log ({first!r}): "
            "set operator_namespace and operator_selector to where the operator's pods run"
        )
    last = said.splitlines()[-1][:160]
    return f"evidence/{OPERATOR_LOG} holds no operator log, only kubectl's words: {last!r}"


@_gate("one-click-restore")
def _one_click(ctx: GateContext) -> Verdict:
    parts: list[Verdict] = []
    for run in _backup_runs(ctx):
        block = _pitr(run, "restore") or {}
        if block.get("create_target") is True or block.get("createTarget") is True:
            status, evidence = _judge_restore(block)
            parts.append((status, [f"{ctx.link(run)}: createTarget: {e}" for e in evidence]))
    return combine(parts, (MANUAL, ["planned: no restore run asked for createTarget"]))
