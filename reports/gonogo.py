"""The release go/no-go document: the production-gates checklist, judged from run folders.

``write_gonogo(run_dirs, out)`` (``python -m reports gonogo RUN_DIR... --out PATH``) reads
every run folder (``reports.gonogo_runs``; a folder holding ``capacity.json`` is a capacity
sweep, evidence for the concurrency gate), parses the checklist (``reports.checklist``),
decides each line with the gate its id names (``reports.gates``) and writes the markdown
plus ``<out-stem>-rto.png`` (RTO per tenant per fault across the runs) next to ``out``.

**Verdict.** GO only if every gate of a mandatory section is PASS. Mandatory are every
section except "Planned next improvements". ``PASS (lab only)`` (proven only by runs
that are not on a real cluster), MANUAL (nothing here can check it: a person signs it
off, or the line has no gate id) and NOT RUN (no run exercised it) are not PASS, so they
block GO as well. A NO-GO lists every FAIL first, then the lab-only gates, then what is
missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.files import replace_text
from reports.checklist import (
    GATE_IDS,
    Checklist,
    ChecklistItem,
    default_checklist_path,
    parse_checklist,
)
from reports.combined import combined_rto_plot
from reports.errors import ReportError
from reports.gate_base import FAIL, LAB_ONLY, MANUAL, NOT_RUN, PASS, GateContext
from reports.gates import fmt_rto, judge
from reports.gonogo_runs import (
    CHECKLIST_RTO_SECONDS,
    FAILURE_KINDS,
    REQUIRED_FAILURE_KINDS,
    SUMMARY_NAME,
    Run,
    Sweep,
    Target,
    load_folder,
    load_run,
    run_problems,
    steady_state,
)
from reports.times import utc_iso

__all__ = [
    "FAIL",
    "FAILURE_KINDS",
    "GATE_IDS",
    "LAB_ONLY",
    "MANUAL",
    "NOT_RUN",
    "PASS",
    "REQUIRED_FAILURE_KINDS",
    "UNMAPPED",
    "Checklist",
    "ChecklistItem",
    "GateResult",
    "GoNoGo",
    "Run",
    "Sweep",
    "Target",
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

UNMAPPED = "no automated check for this line (unmapped)"
LAB_NOTE = (
    "Evidence from the embedded lab (PostgreSQL standing in for SQL Server), from plain local "
    "PostgreSQL or from a summary that does not record a cluster target proves the harness and the lab "
    "operator, not the operator under test: gates passed only there read PASS (lab only) and cannot make "
    "this document GO."
)
_BLOCKING_ORDER = (FAIL, LAB_ONLY, NOT_RUN, MANUAL)


@dataclass(frozen=True)
class GateResult:
    """One checklist line decided: ``gate_id`` is None when no gate is mapped to the line."""

    item: ChecklistItem
    result: str
    evidence: list[str]
    gate_id: str | None = None


@dataclass(frozen=True)
class GoNoGo:
    verdict: str
    gates: list[GateResult]
    runs: list[Run]
    checklist: Checklist
    sweeps: list[Sweep] = field(default_factory=list)

    @property
    def blocking(self) -> list[GateResult]:
        """Mandatory gates that are not PASS: every FAIL first, then lab only, NOT RUN, MANUAL."""
        pending = [g for g in self.gates if g.item.mandatory and g.result != PASS]
        return sorted(pending, key=lambda g: _BLOCKING_ORDER.index(g.result))

    @property
    def unmapped(self) -> list[GateResult]:
        return [g for g in self.gates if g.gate_id is None]


def _decide(item: ChecklistItem, ctx: GateContext) -> GateResult:
    gate_id = item.gate_id
    if gate_id is None:
        return GateResult(item, MANUAL, [UNMAPPED])
    status, evidence = judge(gate_id, ctx)
    return GateResult(item, status, evidence, gate_id)


def evaluate(
    checklist: Checklist,
    runs: Sequence[Run],
    *,
    document: Path,
    base: Path | None = None,
    sweeps: Sequence[Sweep] = (),
) -> GoNoGo:
    """Decide every checklist line from ``runs`` and capacity ``sweeps``.

    Links to run folders are relative to ``base`` (default: the document's folder).
    """
    ctx = GateContext(list(runs), (base or document.parent).resolve(), document, list(sweeps))
    gates = [_decide(item, ctx) for item in checklist.items]
    go = all(g.result == PASS for g in gates if g.item.mandatory) and any(g.item.mandatory for g in gates)
    return GoNoGo("GO" if go else "NO-GO", gates, list(runs), checklist, list(sweeps))


# --------------------------------------------------------------------------- document


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _badge(result: str) -> str:
    return f"**{result}**" if result in (FAIL, PASS) else result


def _code(gate_id: str | None) -> str:
    return f"`{gate_id}`" if gate_id else "unmapped"


def _why(result: GoNoGo) -> list[str]:
    if result.verdict == "GO":
        return ["Every mandatory gate passed.", ""]
    blocking = result.blocking
    lines = ["## Why No-Go", ""]
    lab_only = [g for g in blocking if g.result == LAB_ONLY]
    for gate in blocking:
        if gate.result == LAB_ONLY:  # one line for all of them: their evidence is in the tables
            if gate is lab_only[0]:
                lines.append(
                    f"- **{LAB_ONLY}** ({len(lab_only)} gates): "
                    f"{', '.join(_code(g.gate_id) for g in lab_only)}: proven only by runs that are not "
                    "on a real cluster (the evidence of each is in the tables below)"
                )
            continue
        lines.append(
            f"- **{gate.result}** {_code(gate.gate_id)}: {gate.item.section}: {gate.item.text}: "
            f"{'; '.join(gate.evidence)}"
        )
    if not blocking:
        lines.append("- the checklist has no mandatory gate")
    counts = {s: sum(1 for g in blocking if g.result == s) for s in _BLOCKING_ORDER}
    lines += [
        "",
        f"{counts[FAIL]} failed, {counts[LAB_ONLY]} lab only, {counts[NOT_RUN]} not run, {counts[MANUAL]} "
        "manual. GO requires every mandatory gate to PASS: a PASS (lab only) gate needs the same evidence "
        "from a run on a real cluster, a NOT RUN gate needs a run that exercises it, and a MANUAL gate has "
        "no automated check here, so it needs a person's sign-off; none of them counts as PASS.",
        "",
    ]
    return lines


def _target_cell(target: Target) -> str:
    return target.describe() if target.production else f"{target.describe()} (not production evidence)"


def _runs_table(result: GoNoGo, ctx: GateContext) -> list[str]:
    rows = []
    for run in result.runs:
        experiment = run.experiment
        if experiment:
            what = f"{experiment.get('title') or experiment.get('file') or 'experiment'} ({run.fault or '?'})"
        else:
            kinds = list(dict.fromkeys(str(f.get("kind")) for f in run.faults))
            what = f"local run ({', '.join(kinds) or 'no fault'})"
        verdict = str(run.summary.get("verdict") or "?")
        if run.chaos_status:
            verdict += f"; chaos {run.chaos_status}"
        report = "report.md" if (run.path / "report.md").is_file() else SUMMARY_NAME
        lost = run.lost()
        rows.append(
            [
                run.run_id,
                _target_cell(run.target),
                what,
                str(len(run.tenants)),
                fmt_rto(run.results()),
                "cannot tell" if lost is None else str(lost),
                verdict,
                ctx.link(run, report, report),
            ]
        )
    header = ["run", "target", "experiment / fault", "tenants", "worst RTO", "lost writes", "verdict", "link"]
    return ["## Runs", "", *(_table(header, rows) if rows else ["No runs."]), ""]


def _header(result: GoNoGo, ctx: GateContext, checklist_path: Path | None) -> list[str]:
    lines = [f"# Go/No-Go: {result.checklist.title}", ""]
    lines.append(f"- Generated: {utc_iso(time.time())} (UTC)")
    lines.append(f"- Runs: {', '.join(ctx.link(r) for r in result.runs) or 'none'}")
    if result.sweeps:
        shown = ", ".join(f"{ctx.sweep_link(s)} ({_target_cell(s.target)})" for s in result.sweeps)
        lines.append(f"- Capacity sweeps (evidence for the concurrency gate): {shown}")
    if checklist_path is not None:
        shown = os.path.relpath(checklist_path.resolve(), ctx.base).replace(os.sep, "/")
        lines.append(f"- Checklist: `{shown}`")
    if result.unmapped:
        texts = "; ".join(g.item.text for g in result.unmapped)
        lines.append(f"- Lines with no gate id (MANUAL until `reports/checklist.py` maps them): {texts}")
    lines += ["", f"**Verdict: {result.verdict}**", ""]
    lab_only = [g for g in result.gates if g.result == LAB_ONLY]
    if lab_only:
        lines += [f"> {LAB_NOTE} Lab only here: {', '.join(_code(g.gate_id) for g in lab_only)}.", ""]
    return lines


_HOW = (
    "Each checklist line is decided by one gate, named by its id (`reports/checklist.py` maps every line's "
    "text to it); a line with no id is MANUAL. PASS: runs on a real cluster proved it. PASS (lab only): it "
    "passed, but only with runs from the embedded lab, local runs or summaries without a cluster target, "
    "which do not test the operator under test. FAIL: a run disproved it, wherever it ran (the evidence "
    "says which and why). NOT RUN: no run exercised it. MANUAL: nothing here can check it. A run's NO-GO "
    "verdict, a fault whose injection never completed, a failed, aborted or interrupted chaos experiment, "
    "a steady state not met, a failed activity or rollback fails the gate the run exercises; any RTO over "
    "the 60 s objective or a tenant that never recovered fails the RTO gate. Failure injection passes only "
    "when operator restart, pod eviction and node restart all ran and passed. This document's own gate "
    "passes only when every run finished, its summary was built after its data ended, and all runs share "
    "one target. A capacity sweep (a folder holding capacity.json) is evidence for the concurrency gate "
    "only: it cites the largest tenant count that passed per write rate; an incomplete sweep holds the gate "
    "at NOT RUN, a write rate at which no count passed fails it, and the sweep's step runs count as runs "
    "only when passed themselves."
)


def render_gonogo(
    result: GoNoGo, *, document: Path, checklist_path: Path | None = None, plot: str | None = None
) -> str:
    """The go/no-go markdown; ``plot`` is the combined RTO plot's path relative to the document."""
    ctx = GateContext(result.runs, document.parent.resolve(), document, result.sweeps)
    lines = _header(result, ctx, checklist_path)
    lines += _why(result)
    sections = list(dict.fromkeys(g.item.section for g in result.gates))
    for section in sections:
        gates = [g for g in result.gates if g.item.section == section]
        kind = "mandatory" if gates[0].item.mandatory else "not gates: listed for information"
        lines += [f"## {section} ({kind})", ""]
        rows = [[g.item.text, _code(g.gate_id), _badge(g.result), "<br>".join(g.evidence)] for g in gates]
        lines += [*_table(["gate", "id", "result", "evidence"], rows), ""]
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
    lines += ["## How gates are decided", "", _HOW, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_name(out: Path) -> str:
    """The combined plot's file name next to the document: ``<stem>-rto.png``."""
    return f"{out.stem}-rto.png"


def write_gonogo(
    run_dirs: Sequence[str | Path], out: str | Path, checklist: str | Path | None = None
) -> GoNoGo:
    """Read the runs (and capacity sweeps) and the checklist, write the document and its plot.

    Returns the decision. A sweep's step runs are judged only when passed as run folders too.
    """
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
    folders = [load_folder(p) for p in run_dirs]
    runs = [f for f in folders if isinstance(f, Run)]
    sweeps = [f for f in folders if isinstance(f, Sweep)]
    document = Path(out)
    if not document.parent.resolve().is_dir():
        raise ReportError(f"folder {document.parent} does not exist; create it or pass another --out")
    result = evaluate(parsed, runs, document=document, sweeps=sweeps)
    plot = plot_name(document)
    combined_rto_plot(document.parent / plot, [r.summary for r in runs], objective=CHECKLIST_RTO_SECONDS)
    body = render_gonogo(result, document=document, checklist_path=checklist_path, plot=plot)
    try:
        replace_text(document, body)
    except OSError as exc:
        raise ReportError(f"cannot write {document}: {exc.strerror or exc}; check the folder") from None
    return result
