"""The release go/no-go document: the production-gates checklist, judged from run folders.

``write_gonogo(run_dirs, out)`` (``python -m reports gonogo RUN_DIR... --out PATH``) reads
every run folder, parses the checklist (its ``## `` headings and ``- [ ]`` lines, so a line
added to it shows up here as MANUAL "no automated check" instead of vanishing), decides
each gate PASS / FAIL / NOT RUN / MANUAL with its evidence, and writes the markdown plus
``<out-stem>-rto.png`` (RTO per tenant per fault across the runs) next to ``out``.

**Verdict.** GO only if every gate of a mandatory section is PASS. Mandatory are every
section except "Planned next improvements" (a section the checklist adds later is
mandatory too: a release gate errs on the strict side). MANUAL (nothing here can check
it: a person signs it off) and NOT RUN (no run exercised it) are not PASS, so they block
GO as well. A NO-GO lists every FAIL first, then what is missing.

**Inputs per run folder.** ``summary.json`` (required; ``reports.summary``), and optional:
``chaos-journal.json`` (a Chaos Toolkit journal), ``rbac.json``
(``{"service_account", "checks": [{"verb", "resource", "namespace", "allowed"}]}``),
``preflight.json`` (``{"storageclass": {"name", "default", "ok"}, "images": [{"name",
"image", "pinned"}], "resources": [{"name", "requests", "limits", "ok"}]}``) and
``evidence/{before,after}/{pods,crds,crs,jobs,pvc}.txt`` plus ``evidence/operator.log``.
A run is a *Kubernetes run* when its summary names an ``experiment`` or it has a chaos
journal. Summary keys read besides the analysis: ``experiment`` (``{"title", "file",
"fault"}``), ``chaos_status``, ``helm`` (``{"ok": bool, "detail"}``), ``integrity``
(``{"ok": bool, "detail"}``) and ``pitr``, read as::

    "pitr": {
      "backup":     {"policy_ready": bool, "full": {"ok": bool, "name"} | bool,
                     "log": {"ok": bool, "name"} | bool, "error": str},
      "restore":    {"ok": bool, "target": str, "target_time": str,
                     "create_target": bool, "error": str},
      "validation": {"ok": bool, "missing": int, "extra": int,
                     "restore_point_error_seconds": float}}

Only runs whose experiment fault is ``pitr-restore`` or ``backup-under-chaos`` count for
the backup and restore gates. A missing key leaves its gate NOT RUN for that run;
``ok: false`` (or ``policy_ready: false``) is a FAIL. Validation passes only when ``ok``
is true and ``missing`` and ``extra`` are both 0; the restore point error is reported.

**A run's problems** (each one FAILs the gate the run exercises, with its text): a
NO-GO verdict (its violations), a chaos status ``failed``/``aborted``/``interrupted``,
a steady state not met before or after the fault, a failed method activity or rollback.
The gate a run exercises: "Failure-injection test" for operator-restart, pod-eviction,
node-drain and node-restart; the restore gate for ``pitr-restore``; the backup gate for
``backup-under-chaos``; the multi-tenant concurrency gate for runs without an experiment
(the lab's local runs). A chaos status failure or a failed rollback also FAILs
"Failure-injection test", whatever the experiment. Any RTO over the objective (the
stricter of the run's and the checklist's 60 s) or a tenant that never recovered FAILs
the RTO gate; lost acknowledged writes in a run of two or more tenants FAIL the
concurrency gate.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.combined import combined_rto_plot
from reports.errors import ReportError
from reports.times import parse_time, utc_iso

__all__ = [
    "FAIL",
    "FAILURE_KINDS",
    "MANUAL",
    "NOT_RUN",
    "PASS",
    "REQUIRED_FAILURE_KINDS",
    "Checklist",
    "ChecklistItem",
    "GateResult",
    "GoNoGo",
    "Run",
    "default_checklist_path",
    "evaluate",
    "load_run",
    "parse_checklist",
    "plot_name",
    "render_gonogo",
    "run_problems",
    "steady_state",
    "write_gonogo",
]

PASS = "PASS"  # noqa: S105 - a gate result, not a password
FAIL = "FAIL"
NOT_RUN = "NOT RUN"
MANUAL = "MANUAL"

CHECKLIST_RTO_SECONDS = 60.0
SOAK_SECONDS = 24 * 3600.0
REQUIRED_FAILURE_KINDS = ("operator-restart", "pod-eviction", "node-restart")
FAILURE_KINDS = ("operator-restart", "pod-eviction", "node-drain", "node-restart")
BACKUP_KINDS = ("pitr-restore", "backup-under-chaos")
BAD_CHAOS_STATUSES = ("failed", "aborted", "interrupted")
SNAPSHOT_FILES = ("pods.txt", "crds.txt", "crs.txt", "jobs.txt", "pvc.txt")
MSSQL_CRDS = ("mssqlinstances", "mssqlbackuppolicies", "mssqlbackups", "mssqlrestores")

SUMMARY_NAME = "summary.json"
JOURNAL_NAME = "chaos-journal.json"
RBAC_NAME = "rbac.json"
PREFLIGHT_NAME = "preflight.json"
EVIDENCE_DIR = "evidence"
OPERATOR_LOG = "operator.log"

_PROJECT = Path(__file__).resolve().parent.parent
_SHARED_CHECKLIST = _PROJECT.parent / "shared" / "reference" / "production-gates-checklist.md"
_BUNDLED_CHECKLIST = Path(__file__).resolve().parent / "checklist.md"
_NOT_MANDATORY = re.compile(r"planned|next improvements", re.IGNORECASE)
_RULES_SECTION = re.compile(r"go\s*/\s*no-go", re.IGNORECASE)


# --------------------------------------------------------------------------- checklist


@dataclass(frozen=True)
class ChecklistItem:
    """One ``- [ ]`` line: its section heading (numbering removed) and text as written."""

    section: str
    text: str
    mandatory: bool


@dataclass(frozen=True)
class Checklist:
    title: str
    items: list[ChecklistItem]
    rules: list[str] = field(default_factory=list)


def default_checklist_path() -> Path:
    """The shared checklist next to the project if it exists, else the copy in ``reports/``."""
    return _SHARED_CHECKLIST if _SHARED_CHECKLIST.is_file() else _BUNDLED_CHECKLIST


def parse_checklist(text: str) -> Checklist:
    """Every ``- [ ]``/``- [x]`` line under its ``#`` heading; the Go/No-Go section's lines are rules."""
    title = "Production gates checklist"
    section = ""
    items: list[ChecklistItem] = []
    rules: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            name = re.sub(r"^\d+[.)]\s*", "", heading.group(2).strip())
            if len(heading.group(1)) == 1:
                title = name
            else:
                section = name
            continue
        box = re.match(r"^[-*]\s+\[[ xX]\]\s+(.*)$", line)
        if box:
            mandatory = not _NOT_MANDATORY.search(section)
            items.append(ChecklistItem(section or "Checklist", box.group(1).strip(), mandatory))
        elif _RULES_SECTION.search(section) and re.match(r"^[-*]\s+", line):
            rules.append(line[1:].strip())
    return Checklist(title, items, rules)


# --------------------------------------------------------------------------- runs


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} cannot be read as JSON ({exc}); fix or remove the {what}") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path} must hold a JSON object; fix or remove the {what}")
    return doc


def _optional_json(path: Path, what: str) -> dict[str, Any] | None:
    return _read_json(path, what) if path.is_file() else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list_of_dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


@dataclass(frozen=True)
class Run:
    """One run folder and what it holds (None where an optional file is absent)."""

    path: Path
    summary: dict[str, Any]
    journal: dict[str, Any] | None = None
    rbac: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.path.resolve().name)

    @property
    def experiment(self) -> dict[str, Any]:
        return _dict(self.summary.get("experiment"))

    @property
    def fault(self) -> str | None:
        value = self.experiment.get("fault")
        return str(value) if value else None

    @property
    def is_k8s(self) -> bool:
        return bool(self.experiment) or self.journal is not None

    @property
    def tenants(self) -> list[str]:
        tenants = self.summary.get("tenants")
        if isinstance(tenants, list) and tenants:
            return [str(t) for t in tenants]
        return list(_dict(self.summary.get("totals")))

    @property
    def objective(self) -> float:
        value = _number(_dict(self.summary.get("objective")).get("rto_seconds"))
        return CHECKLIST_RTO_SECONDS if value is None else value

    @property
    def strict_objective(self) -> float:
        """The stricter of the run's RTO objective and the checklist's one minute."""
        return min(self.objective, CHECKLIST_RTO_SECONDS)

    @property
    def duration(self) -> float | None:
        times = []
        for name in ("started_at", "ended_at"):
            value = _number(self.summary.get(f"{name}_epoch"))
            times.append(value if value is not None else parse_time(self.summary.get(name)))
        start, end = times
        return None if start is None or end is None else end - start

    @property
    def chaos_status(self) -> str | None:
        status = (self.journal or {}).get("status") or self.summary.get("chaos_status")
        return str(status) if status else None

    @property
    def faults(self) -> list[dict[str, Any]]:
        return _list_of_dicts(self.summary.get("faults"))

    def failure_kinds(self) -> list[str]:
        """The failure-injection kinds this run exercised (experiment fault and fault kinds)."""
        kinds = {self.fault} | {str(f.get("kind")) for f in self.faults}
        return [k for k in FAILURE_KINDS if k in kinds]

    def results(self, kind: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(fault, tenant result) pairs; with ``kind``, those of that failure kind."""
        out = []
        for fault in self.faults:
            if kind is not None and self.fault != kind and fault.get("kind") != kind:
                continue
            out += [(fault, r) for r in _list_of_dicts(fault.get("results"))]
        return out

    def lost(self) -> int | None:
        """Lost acknowledged writes over the run; None when any tenant's count is unknown."""
        totals = [_dict(t) for t in _dict(self.summary.get("totals")).values()]
        values = [t.get("lost") for t in totals]
        if not totals:
            values = [r.get("lost_acked_writes") for _, r in self.results()]
        if not values:
            return 0
        numbers = [_number(v) for v in values]
        if any(n is None for n in numbers):
            return None
        return int(sum(n for n in numbers if n is not None))

    def evidence(self, *parts: str) -> Path:
        return self.path.joinpath(EVIDENCE_DIR, *parts)


def load_run(path: str | Path) -> Run:
    """Read one run folder; ReportError (one line, with the fix) when it cannot be used."""
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"run folder {folder} does not exist; pass the folder of a run (runs/<run-id>/)")
    summary = folder / SUMMARY_NAME
    if not summary.is_file():
        raise ReportError(
            f"{summary} is missing; run `python -m reports build {folder}` first or pass another run folder"
        )
    return Run(
        path=folder,
        summary=_read_json(summary, "summary (rebuild it with `python -m reports build`)"),
        journal=_optional_json(folder / JOURNAL_NAME, "chaos journal"),
        rbac=_optional_json(folder / RBAC_NAME, "RBAC preflight"),
        preflight=_optional_json(folder / PREFLIGHT_NAME, "preflight"),
    )


# --------------------------------------------------------------------------- run problems


def _last_line(value: Any) -> str:
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    lines = [line.strip() for line in str(value or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no reason recorded"


def _activity_name(activity_run: dict[str, Any]) -> str:
    return str(_dict(activity_run.get("activity")).get("name") or "unnamed activity")


def steady_state(run: Run, when: str) -> tuple[bool | None, str]:
    """(met, why) of the ``before``/``after`` hypothesis; met is None when none was recorded."""
    state = _dict(_dict((run.journal or {}).get("steady_states")).get(when))
    met = state.get("steady_state_met")
    if not isinstance(met, bool):
        return None, "no steady-state hypothesis recorded"
    if met:
        return True, "steady state met"
    for probe in _list_of_dicts(state.get("probes")):
        if probe.get("status") == "failed" or probe.get("tolerance_met") is False:
            reason = (
                _last_line(probe.get("exception")) if probe.get("status") == "failed" else "out of tolerance"
            )
            return False, f"probe '{_activity_name(probe)}' {reason}"
    return False, "steady state not met"


def _failed_activities(run: Run, key: str) -> list[tuple[str, str]]:
    return [
        (_activity_name(a), _last_line(a.get("exception")))
        for a in _list_of_dicts((run.journal or {}).get(key))
        if a.get("status") == "failed"
    ]


def _chaos_problems(run: Run) -> list[str]:
    """A failed/aborted/interrupted experiment and failed rollbacks."""
    out = []
    if run.chaos_status in BAD_CHAOS_STATUSES:
        out.append(f"chaos experiment {run.chaos_status}")
    out += [f"rollback '{name}' failed: {why}" for name, why in _failed_activities(run, "rollbacks")]
    return out


def _rto_findings(run: Run) -> list[str]:
    """Every (fault, tenant) over the stricter objective, not recovered, or with an unknown RTO."""
    out = []
    limit = run.strict_objective
    for fault, result in run.results():
        who = f"{fault.get('name', '?')} {result.get('tenant', '?')}"
        rto = _number(result.get("rto_seconds"))
        if not result.get("recovered"):
            out.append(f"{who}: not recovered")
        elif rto is None:
            out.append(f"{who}: RTO cannot tell")
        elif rto > limit:
            out.append(f"{who}: RTO {rto:.1f}s exceeds the {limit:g}s objective")
    return out


def _loss_findings(run: Run) -> list[str]:
    lost = run.lost()
    if lost is None:
        return ["cannot tell whether acknowledged writes were lost (read-back missing or failed)"]
    return [f"{lost} acknowledged write(s) lost"] if lost else []


def run_problems(run: Run) -> list[str]:
    """Everything that makes this run fail the gate it exercises (see the module docstring)."""
    out: list[str] = []
    if run.summary.get("verdict") != "GO":
        violations = [str(v) for v in run.summary.get("violations") or []]
        out += violations or [f"verdict {run.summary.get('verdict') or 'missing'} (no violation recorded)"]
    else:  # a summary that says GO but holds numbers that are not: trust the numbers
        out += _rto_findings(run) + _loss_findings(run)
    out += _chaos_problems(run)
    before, why = steady_state(run, "before")
    if before is False:
        out.append(f"steady state before the fault not met ({why}); the fault was not tested")
    after, why = steady_state(run, "after")
    if after is False:
        out.append(f"steady state after the fault not met ({why}): the experiment deviated")
    elif (run.journal or {}).get("deviated") is True:
        out.append("the experiment deviated from its steady state")
    out += [f"activity '{name}' failed: {why}" for name, why in _failed_activities(run, "run")]
    return out


# --------------------------------------------------------------------------- gates


@dataclass(frozen=True)
class GateResult:
    item: ChecklistItem
    result: str
    evidence: list[str]


@dataclass(frozen=True)
class _Ctx:
    runs: list[Run]
    base: Path
    document: Path

    def link(self, run: Run, sub: str = "", label: str | None = None) -> str:
        target = run.path.resolve() / sub if sub else run.path.resolve()
        rel = os.path.relpath(target, self.base)
        if not sub:
            rel += "/"
        rel = rel.replace(os.sep, "/")
        return f"[{label or run.run_id}]({f'<{rel}>' if ' ' in rel else rel})"

    @property
    def k8s(self) -> list[Run]:
        return [r for r in self.runs if r.is_k8s]


Verdict = tuple[str, list[str]]


def _combine(parts: Iterable[Verdict], none: Verdict) -> Verdict:
    """FAIL if any part fails, else PASS if any passes, else ``none``; evidence of the winners first."""
    parts = list(parts)
    for status in (FAIL, PASS):
        chosen = [p for p in parts if p[0] == status]
        if chosen:
            evidence = [e for p in chosen for e in p[1]]
            return status, evidence + [e for p in parts if p[0] not in (FAIL, PASS) for e in p[1]]
    return none[0], none[1] + [e for p in parts for e in p[1]]


def _problems_of(ctx: _Ctx, runs: Iterable[Run]) -> list[Verdict]:
    out: list[Verdict] = []
    for run in runs:
        problems = run_problems(run)
        if problems:
            out.append((FAIL, [f"{ctx.link(run)}: {p}" for p in problems]))
    return out


def _manual(reason: str) -> Callable[[_Ctx], Verdict]:
    def decide(_ctx: _Ctx) -> Verdict:
        return MANUAL, [reason]

    return decide


def _gate_crds(ctx: _Ctx) -> Verdict:
    partial = []
    for run in ctx.runs:
        for when in ("before", "after"):
            path = run.evidence(when, "crds.txt")
            if not path.is_file():
                continue
            names = {line.split()[0].split(".")[0].lower() for line in _lines(path) if line.split()}
            missing = [c for c in MSSQL_CRDS if c not in names]
            link = ctx.link(run, f"{EVIDENCE_DIR}/{when}/crds.txt", f"{run.run_id} {when}/crds.txt")
            if not missing:
                return PASS, [f"{link} lists {', '.join(MSSQL_CRDS)} (the version lock is not read from it)"]
            partial.append(f"{link} lacks {', '.join(missing)}")
    return NOT_RUN, partial or ["no run has an evidence/{before,after}/crds.txt snapshot"]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None


def _flag_gate(key: str, what: str, manual: str) -> Callable[[_Ctx], Verdict]:
    """A summary block ``{"ok": bool, "detail"}`` decides; without one the gate is MANUAL."""

    def decide(ctx: _Ctx) -> Verdict:
        parts: list[Verdict] = []
        for run in ctx.runs:
            block = _dict(run.summary.get(key))
            if isinstance(block.get("ok"), bool):
                detail = f": {block['detail']}" if block.get("detail") else ""
                status = PASS if block["ok"] else FAIL
                parts.append(
                    (status, [f"{ctx.link(run)}: {what} {'ok' if block['ok'] else 'failed'}{detail}"])
                )
        return _combine(parts, (MANUAL, [manual]))

    return decide


def _gate_instance_ready(ctx: _Ctx) -> Verdict:
    parts: list[Verdict] = []
    for run in ctx.k8s:
        met, why = steady_state(run, "before")
        if met is True:
            parts.append(
                (PASS, [f"{ctx.link(run)}: steady state before the fault met (every instance Ready)"])
            )
        elif met is False:
            parts.append((FAIL, [f"{ctx.link(run)}: steady state before the fault not met: {why}"]))
    if not ctx.k8s:
        return NOT_RUN, ["no Kubernetes experiment run"]
    return _combine(
        parts, (NOT_RUN, ["no Kubernetes run recorded a steady-state hypothesis before its fault"])
    )


def _backup_runs(ctx: _Ctx) -> list[Run]:
    return [r for r in ctx.runs if r.fault in BACKUP_KINDS]


def _pitr(run: Run, part: str) -> dict[str, Any] | None:
    block = _dict(run.summary.get("pitr")).get(part)
    return block if isinstance(block, dict) else None


def _ok_of(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    ok = _dict(value).get("ok")
    return ok if isinstance(ok, bool) else None


def _error(block: dict[str, Any]) -> str:
    return f" ({block['error']})" if block.get("error") else ""


def _pitr_gate(
    part: str, home: str | None, judge: Callable[[dict[str, Any]], Verdict]
) -> Callable[[_Ctx], Verdict]:
    """Judge ``pitr[part]`` of every backup/restore run; the ``home`` run kind's problems FAIL it."""

    def decide(ctx: _Ctx) -> Verdict:
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
        parts += _problems_of(ctx, [r for r in runs if r.fault == home])
        return _combine(parts, (NOT_RUN, []))

    return decide


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
        name = _dict(block.get(kind)).get("name")
        label = f"{kind} backup{f' {name}' if name else ''}"
        if ok is None:
            parts.append((NOT_RUN, [f"{label}: not recorded"]))
        else:
            parts.append((PASS, [f"{label} completed"]) if ok else (FAIL, [f"{label} failed{_error(block)}"]))
    if any(p[0] == NOT_RUN for p in parts) and not any(p[0] == FAIL for p in parts):
        return NOT_RUN, [e for p in parts for e in p[1]]
    return _combine(parts, (NOT_RUN, []))


def _judge_restore(block: dict[str, Any]) -> Verdict:
    ok = block.get("ok")
    where = f" to {block['target']}" if block.get("target") else ""
    when = f" at {block['target_time']}" if block.get("target_time") else ""
    if not isinstance(ok, bool):
        return NOT_RUN, ["`pitr.restore.ok` not recorded"]
    if ok:
        return PASS, [f"restore{where}{when} completed"]
    return FAIL, [f"restore{where}{when} failed{_error(block)}"]


def _judge_validation(block: dict[str, Any]) -> Verdict:
    ok = block.get("ok")
    missing = _number(block.get("missing"))
    extra = _number(block.get("extra"))
    error = _number(block.get("restore_point_error_seconds"))
    counts = (
        f"missing {'?' if missing is None else int(missing)}, extra {'?' if extra is None else int(extra)}, "
        f"restore point error {'cannot tell' if error is None else f'{error:.2f} s'}"
    )
    if not isinstance(ok, bool):
        return NOT_RUN, [f"`pitr.validation.ok` not recorded ({counts})"]
    if ok and missing == 0 and extra == 0:
        return PASS, [f"target matches the targetTime window ({counts})"]
    return FAIL, [f"data validation failed ({counts})"]


def _gate_concurrency(ctx: _Ctx) -> Verdict:
    parts: list[Verdict] = []
    for run in ctx.runs:
        n = len(run.tenants)
        lost = run.lost()
        if n < 2:
            continue
        if lost == 0:
            parts.append(
                (PASS, [f"{ctx.link(run)}: N = {n} tenants in parallel, 0 acknowledged writes lost"])
            )
        elif lost is not None:
            parts.append((FAIL, [f"{ctx.link(run)}: N = {n} tenants, {lost} acknowledged write(s) lost"]))
    lab_runs = [r for r in ctx.runs if not r.is_k8s and not r.failure_kinds() and r.fault not in BACKUP_KINDS]
    parts += _problems_of(ctx, lab_runs)
    status, evidence = _combine(parts, (NOT_RUN, ["no run with two or more tenants and a known loss count"]))
    if status == PASS:
        best = max(len(r.tenants) for r in ctx.runs if r.lost() == 0 and len(r.tenants) >= 2)
        evidence = [f"N = {best}", *evidence]
    return status, evidence


def _gate_soak(ctx: _Ctx) -> Verdict:
    parts: list[Verdict] = []
    longest: float | None = None
    for run in ctx.runs:
        duration = run.duration
        if duration is None:
            continue
        longest = duration if longest is None else max(longest, duration)
        if duration >= SOAK_SECONDS:
            problems = run_problems(run)
            text = f"{ctx.link(run)}: ran {duration / 3600:.1f} h"
            parts.append((FAIL, [f"{text}: {p}" for p in problems]) if problems else (PASS, [text]))
    longest_text = (
        "no run recorded its start and end" if longest is None else f"longest run {longest / 3600:.2f} h"
    )
    return _combine(parts, (NOT_RUN, [f"no run of 24 h or more ({longest_text})"]))


def _fmt_rto(results: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    if any(not r.get("recovered") for _, r in results):
        return "not recovered"
    values = [_number(r.get("rto_seconds")) for _, r in results]
    if not values:
        return "no tenant results"
    if any(v is None for v in values):
        return "cannot tell"
    return f"{max(v for v in values if v is not None):.2f} s"


def _gate_failure_injection(ctx: _Ctx) -> Verdict:
    """One line per fault kind (status, worst RTO, runs, and why it failed); all three required must pass."""
    lines: list[str] = []
    failed = False
    status_by_kind: dict[str, str] = {}
    for kind in FAILURE_KINDS:
        runs = [r for r in ctx.runs if kind in r.failure_kinds()]
        if not runs:
            status_by_kind[kind] = NOT_RUN
            lines.append(f"{kind}: NOT RUN")
            continue
        results = [pair for r in runs for pair in r.results(kind)]
        bad = [f"{ctx.link(r)}: {p}" if len(runs) > 1 else p for r in runs for p in run_problems(r)]
        status_by_kind[kind] = FAIL if bad else PASS
        failed = failed or bool(bad)
        links = ", ".join(ctx.link(r) for r in runs)
        line = f"{kind}: {status_by_kind[kind]}, worst RTO {_fmt_rto(results)} ({links})"
        lines.append(line + (f": {'; '.join(bad)}" if bad else ""))
    others = [r for r in ctx.runs if not r.failure_kinds()]
    elsewhere = [f"{ctx.link(r)} ({r.fault or 'lab run'}): {p}" for r in others for p in _chaos_problems(r)]
    if failed or elsewhere:
        return FAIL, sorted(lines, key=lambda line: ": FAIL" not in line) + elsewhere
    missing = [k for k in REQUIRED_FAILURE_KINDS if status_by_kind[k] != PASS]
    if missing:
        return NOT_RUN, [f"required but not run: {', '.join(missing)}", *lines]
    return PASS, lines


def _gate_rto(ctx: _Ctx) -> Verdict:
    over = [f"{ctx.link(r)}: {f}" for r in ctx.runs for f in _rto_findings(r)]
    if over:
        return FAIL, over
    runs = [r for r in ctx.runs if r.failure_kinds() and r.results()]
    if not runs:
        return NOT_RUN, ["no failure-injection run (operator restart, pod eviction, node drain/restart)"]
    worst = _fmt_rto([pair for r in runs for pair in r.results()])
    count = sum(len(r.results()) for r in runs)
    return PASS, [
        f"every tenant recovered within {CHECKLIST_RTO_SECONDS:g} s after every fault: worst {worst} "
        f"over {count} tenant-fault pairs in {', '.join(ctx.link(r) for r in runs)}"
    ]


def _gate_rbac(ctx: _Ctx) -> Verdict:
    parts: list[Verdict] = []
    for run in ctx.runs:
        if run.rbac is None:
            continue
        checks = run.rbac.get("checks")
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            raise ReportError(
                f"{run.path / RBAC_NAME}: 'checks' must be a list of {{verb, resource, namespace, allowed}}; "
                "fix or remove rbac.json"
            )
        account = run.rbac.get("service_account") or "the operator service account"
        link = ctx.link(run, RBAC_NAME, f"{run.run_id}/rbac.json")
        denied = [c for c in checks if c.get("allowed") is not True]
        if denied:
            parts.append(
                (
                    FAIL,
                    [
                        f"{link}: {account} cannot {c.get('verb', '?')} {c.get('resource', '?')}"
                        f" in {c.get('namespace') or 'the cluster'}"
                        for c in denied
                    ],
                )
            )
        elif checks:
            parts.append((PASS, [f"{link}: {len(checks)} `kubectl auth can-i` checks allowed for {account}"]))
    return _combine(parts, (NOT_RUN, ["no run has an rbac.json (`kubectl auth can-i` preflight)"]))


def _gate_storageclass(ctx: _Ctx) -> Verdict:
    parts: list[Verdict] = []
    for run in ctx.runs:
        block = _dict((run.preflight or {}).get("storageclass"))
        if not isinstance(block.get("ok"), bool):
            continue
        name = block.get("name") or "?"
        default = " (default)" if block.get("default") else ""
        link = ctx.link(run, PREFLIGHT_NAME, f"{run.run_id}/preflight.json")
        parts.append(
            (PASS, [f"{link}: StorageClass {name}{default} available"])
            if block["ok"]
            else (FAIL, [f"{link}: StorageClass {name}{default} not available or unhealthy"])
        )
    return _combine(parts, (NOT_RUN, ["no run has a preflight.json with a storageclass check"]))


def _list_gate(
    key: str, good: str, judge: Callable[[dict[str, Any]], bool], describe: Callable[[dict[str, Any]], str]
) -> Callable[[_Ctx], Verdict]:
    """Every entry of ``preflight[key]`` must satisfy ``judge``."""

    def decide(ctx: _Ctx) -> Verdict:
        parts: list[Verdict] = []
        for run in ctx.runs:
            entries = _list_of_dicts((run.preflight or {}).get(key))
            if not entries:
                continue
            link = ctx.link(run, PREFLIGHT_NAME, f"{run.run_id}/preflight.json")
            bad = [e for e in entries if not judge(e)]
            if bad:
                parts.append((FAIL, [f"{link}: {describe(e)}" for e in bad]))
            else:
                parts.append((PASS, [f"{link}: {len(entries)} {good}"]))
        return _combine(parts, (NOT_RUN, [f"no run has a preflight.json with `{key}`"]))

    return decide


def _gate_this_document(ctx: _Ctx) -> Verdict:
    return PASS, [f"this document ({ctx.document.name}), generated from {len(ctx.runs)} run folder(s)"]


def _gate_validation_outputs(ctx: _Ctx) -> Verdict:
    runs = [r for r in _backup_runs(ctx) if _pitr(r, "validation") is not None]
    if not runs:
        return NOT_RUN, ["no restore run recorded `pitr.validation`"]
    return PASS, [
        f"{ctx.link(r, SUMMARY_NAME, f'{r.run_id}/summary.json')} (`pitr.validation`)" for r in runs
    ]


def _gate_snapshots(ctx: _Ctx) -> Verdict:
    if not ctx.k8s:
        return NOT_RUN, ["no Kubernetes experiment run"]
    gaps = []
    for run in ctx.k8s:
        missing = [
            f"{w}/{n}"
            for w in ("before", "after")
            for n in SNAPSHOT_FILES
            if not run.evidence(w, n).is_file()
        ]
        if missing:
            gaps.append(f"{ctx.link(run)} lacks evidence/{', evidence/'.join(missing)}")
    if gaps:
        return FAIL, gaps
    return PASS, [
        f"{ctx.link(r, EVIDENCE_DIR, f'{r.run_id}/evidence')}: before/ and after/ {', '.join(SNAPSHOT_FILES)}"
        for r in ctx.k8s
    ]


def _gate_operator_logs(ctx: _Ctx) -> Verdict:
    def has_log(run: Run) -> bool:
        return run.evidence(OPERATOR_LOG).is_file()

    lacking = [r for r in _backup_runs(ctx) if not has_log(r)]
    if lacking:
        return FAIL, [f"{ctx.link(r)} ({r.fault}) has no evidence/{OPERATOR_LOG}" for r in lacking]
    present = [r for r in ctx.runs if has_log(r)]
    if not present:
        return NOT_RUN, [f"no run has evidence/{OPERATOR_LOG}"]
    note = (
        [] if _backup_runs(ctx) else ["no backup or restore run yet, so no backup/restore window is covered"]
    )
    return PASS, [
        *[ctx.link(r, f"{EVIDENCE_DIR}/{OPERATOR_LOG}", f"{r.run_id}/operator.log") for r in present],
        *note,
    ]


def _gate_one_click(ctx: _Ctx) -> Verdict:
    parts: list[Verdict] = []
    for run in _backup_runs(ctx):
        block = _pitr(run, "restore") or {}
        if block.get("create_target") is True or block.get("createTarget") is True:
            status, evidence = _judge_restore(block)
            parts.append((status, [f"{ctx.link(run)}: createTarget: {e}" for e in evidence]))
    return _combine(parts, (MANUAL, ["planned: no restore run asked for createTarget"]))


_GateSpec = tuple[str, Callable[[_Ctx], Verdict]]

_GATES: list[_GateSpec] = [
    (r"crds? installed", _gate_crds),
    (
        r"helm chart",
        _flag_gate("helm", "Helm deploy", "the harness does not run Helm: check the release by hand"),
    ),
    (r"mssqlinstance\b.*ready", _gate_instance_ready),
    (r"backuppolicy\b.*ready", _pitr_gate("backup", None, _judge_policy)),
    (r"\bfull\b.*\blog\b.*backup", _pitr_gate("backup", "backup-under-chaos", _judge_backups)),
    (
        r"target instance must exist",
        _manual("constraint: create the target MSSQLInstance before the MSSQLRestore"),
    ),
    (r"restore request completes", _pitr_gate("restore", "pitr-restore", _judge_restore)),
    (r"validation outputs", _gate_validation_outputs),
    (r"data validation confirms", _pitr_gate("validation", None, _judge_validation)),
    (r"multi-tenant|concurren", _gate_concurrency),
    (r"soak", _gate_soak),
    (r"failure[- ]injection", _gate_failure_injection),
    (r"rbac preflight|auth can-i|rbac is mandatory|core-managed rbac", _gate_rbac),
    (r"\brto\b", _gate_rto),
    (r"one-click restore", _gate_one_click),
    (r"e2e pipeline|\bci\b", _manual("planned: not checked by a run")),
    (r"integrity", _flag_gate("integrity", "integrity job", "planned: no run recorded an `integrity` block")),
    (r"storageclass", _gate_storageclass),
    (
        r"image tags? pinned|floating tag",
        _list_gate(
            "images",
            "images pinned",
            lambda e: e.get("pinned") is True,
            lambda e: f"{e.get('name', '?')} uses floating image {e.get('image', '?')}",
        ),
    ),
    (
        r"resource limits|limits/requests|requests set",
        _list_gate(
            "resources",
            "workloads with requests and limits",
            lambda e: e.get("ok") is True,
            lambda e: f"{e.get('name', '?')}: requests {e.get('requests')}, limits {e.get('limits')}",
        ),
    ),
    (r"alerting", _manual("alert rules are not checked by a run: verify them by hand")),
    (r"runbook", _manual("needs a second engineer's sign-off")),
    (r"go-no-go\.md|updated for current run", _gate_this_document),
    (r"kubectl get|snapshots", _gate_snapshots),
    (r"operator logs", _gate_operator_logs),
]


def _decide(item: ChecklistItem, ctx: _Ctx) -> GateResult:
    text = item.text.replace("`", "").lower()
    for pattern, decide in _GATES:
        if re.search(pattern, text):
            status, evidence = decide(ctx)
            return GateResult(item, status, evidence)
    return GateResult(item, MANUAL, ["no automated check"])


# --------------------------------------------------------------------------- verdict and document


@dataclass(frozen=True)
class GoNoGo:
    verdict: str
    gates: list[GateResult]
    runs: list[Run]
    checklist: Checklist

    @property
    def blocking(self) -> list[GateResult]:
        """Mandatory gates that are not PASS: every FAIL first, then NOT RUN, then MANUAL."""
        order = {FAIL: 0, NOT_RUN: 1, MANUAL: 2}
        pending = [g for g in self.gates if g.item.mandatory and g.result != PASS]
        return sorted(pending, key=lambda g: order.get(g.result, 3))


def evaluate(
    checklist: Checklist, runs: Sequence[Run], *, document: Path, base: Path | None = None
) -> GoNoGo:
    """Decide every checklist line from ``runs``.

    Links to run folders are relative to ``base`` (default: the document's folder).
    """
    ctx = _Ctx(list(runs), (base or document.parent).resolve(), document)
    gates = [_decide(item, ctx) for item in checklist.items]
    go = all(g.result == PASS for g in gates if g.item.mandatory) and any(g.item.mandatory for g in gates)
    return GoNoGo("GO" if go else "NO-GO", gates, list(runs), checklist)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _badge(result: str) -> str:
    return f"**{result}**" if result in (FAIL, PASS) else result


def _why(result: GoNoGo) -> list[str]:
    if result.verdict == "GO":
        return ["Every mandatory gate passed.", ""]
    blocking = result.blocking
    lines = ["## Why No-Go", ""]
    for gate in blocking:
        lines.append(
            f"- **{gate.result}**: {gate.item.section}: {gate.item.text}: {'; '.join(gate.evidence)}"
        )
    if not blocking:
        lines.append("- the checklist has no mandatory gate")
    counts = {s: sum(1 for g in blocking if g.result == s) for s in (FAIL, NOT_RUN, MANUAL)}
    lines += [
        "",
        f"{counts[FAIL]} failed, {counts[NOT_RUN]} not run, {counts[MANUAL]} manual. GO requires every "
        "mandatory gate to PASS: a NOT RUN gate needs a run that exercises it, and a MANUAL gate has no "
        "automated check here, so it needs a person's sign-off; neither counts as PASS.",
        "",
    ]
    return lines


def _lost_cell(run: Run) -> str:
    lost = run.lost()
    return "cannot tell" if lost is None else str(lost)


def _runs_table(result: GoNoGo, ctx: _Ctx) -> list[str]:
    rows = []
    for run in result.runs:
        experiment = run.experiment
        if experiment:
            what = f"{experiment.get('title') or experiment.get('file') or 'experiment'} ({run.fault or '?'})"
        else:
            kinds = list(dict.fromkeys(str(f.get("kind")) for f in run.faults))
            what = f"lab run ({', '.join(kinds) or 'no fault'})"
        verdict = str(run.summary.get("verdict") or "?")
        if run.chaos_status:
            verdict += f"; chaos {run.chaos_status}"
        report = "report.md" if (run.path / "report.md").is_file() else SUMMARY_NAME
        rows.append(
            [
                run.run_id,
                what,
                str(len(run.tenants)),
                _fmt_rto(run.results()),
                _lost_cell(run),
                verdict,
                ctx.link(run, report, report),
            ]
        )
    header = ["run", "experiment / fault", "tenants", "worst RTO", "lost writes", "verdict", "link"]
    return ["## Runs", "", *(_table(header, rows) if rows else ["No runs."]), ""]


def render_gonogo(
    result: GoNoGo, *, document: Path, checklist_path: Path | None = None, plot: str | None = None
) -> str:
    """The go/no-go markdown; ``plot`` is the combined RTO plot's path relative to the document."""
    ctx = _Ctx(result.runs, document.parent.resolve(), document)
    lines = [f"# Go/No-Go: {result.checklist.title}", ""]
    lines.append(f"- Generated: {utc_iso(time.time())} (UTC)")
    lines.append(f"- Runs: {', '.join(ctx.link(r) for r in result.runs) or 'none'}")
    if checklist_path is not None:
        shown = os.path.relpath(checklist_path.resolve(), ctx.base).replace(os.sep, "/")
        lines.append(f"- Checklist: `{shown}`")
    lines += ["", f"**Verdict: {result.verdict}**", ""]
    lines += _why(result)
    sections = list(dict.fromkeys(g.item.section for g in result.gates))
    for section in sections:
        gates = [g for g in result.gates if g.item.section == section]
        kind = "mandatory" if gates[0].item.mandatory else "not gates: listed for information"
        lines += [f"## {section} ({kind})", ""]
        rows = [[g.item.text, _badge(g.result), "<br>".join(g.evidence)] for g in gates]
        lines += [*_table(["gate", "result", "evidence"], rows), ""]
    lines += _runs_table(result, ctx)
    if plot:
        target = f"<{plot}>" if " " in plot else plot
        lines += [
            "## RTO across runs",
            "",
            f"![RTO per tenant per fault across runs]({target})",
            "",
            "One column per run and fault, one point per tenant (hollow: the fault did not affect it); a red "
            "cross is a tenant that never recovered. The dashed line is the objective.",
            "",
        ]
    if result.checklist.rules:
        lines += ["## The checklist's decision rule", "", *[f"- {r}" for r in result.checklist.rules], ""]
    lines += [
        "## How gates are decided",
        "",
        "PASS: a run proved it. FAIL: a run disproved it (the evidence says which and why). NOT RUN: no run "
        "exercised it. MANUAL: nothing here can check it. A run's NO-GO verdict, a failed, aborted or "
        "interrupted chaos experiment, a steady state not met, a failed activity or rollback fails the gate "
        "the run exercises; any RTO over the 60 s objective or a tenant that never recovered fails the RTO "
        "gate. Failure injection passes only when operator restart, pod eviction and node restart all ran "
        "and passed.",
        "",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_name(out: Path) -> str:
    """The combined plot's file name next to the document: ``<stem>-rto.png``."""
    return f"{out.stem}-rto.png"


def write_gonogo(
    run_dirs: Sequence[str | Path], out: str | Path, checklist: str | Path | None = None
) -> GoNoGo:
    """Read the runs and the checklist, write the document and its plot; returns the decision."""
    if not run_dirs:
        raise ReportError("no run folder given; pass one or more run folders (runs/<run-id>/)")
    checklist_path = Path(checklist) if checklist is not None else default_checklist_path()
    try:
        text = checklist_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(
            f"cannot read the checklist {checklist_path} ({exc}); pass --checklist PATH"
        ) from None
    parsed = parse_checklist(text)
    if not parsed.items:
        raise ReportError(f"{checklist_path} has no '- [ ]' lines; pass the production-gates checklist")
    runs = [load_run(p) for p in run_dirs]
    document = Path(out)
    if not document.parent.resolve().is_dir():
        raise ReportError(f"folder {document.parent} does not exist; create it or pass another --out")
    result = evaluate(parsed, runs, document=document)
    plot = plot_name(document)
    combined_rto_plot(document.parent / plot, [r.summary for r in runs], objective=CHECKLIST_RTO_SECONDS)
    body = render_gonogo(result, document=document, checklist_path=checklist_path, plot=plot)
    tmp = document.with_name(f".{document.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(document)
    except OSError as exc:
        raise ReportError(f"cannot write {document}: {exc.strerror or exc}; check the folder") from None
    return result
