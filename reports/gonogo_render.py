"""The go/no-go document as markdown, from a decision (``reports.gonogo_decision.GoNoGo``).

``render_gonogo(result, document=..., checklist_path=..., plot=...)`` writes, in order:
the header (when, which runs and sweeps, which checklist, the verdict, the lab note
once), "Why No-Go" (every blocking gate, FAIL first), one table per checklist section,
the sign-offs, the runs (with each run's column label in the RTO plot), the plot, the
checklist's own rules and how gates are decided. Links are relative to the document.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from reports.combined import column_labels
from reports.gate_base import FAIL, LAB_ONLY, MANUAL, NOT_RUN, PASS, SIGNED_OFF, GateContext
from reports.gates import fmt_rto
from reports.gonogo_decision import BLOCKING_ORDER, GoNoGo
from reports.gonogo_runs import SUMMARY_NAME, Target
from reports.signoffs import SignOff, signable_gates
from reports.times import utc_iso

__all__ = ["LAB_NOTE", "plot_name", "render_gonogo"]

LAB_NOTE = (
    "Evidence from the embedded lab (PostgreSQL standing in for SQL Server), from plain local "
    "PostgreSQL or from a summary that does not record a cluster target proves the harness and the lab "
    "operator, not the operator under test: gates passed only there read PASS (lab only) and cannot make "
    "this document GO."
)


def plot_name(out: Path) -> str:
    """The combined plot's file name next to the document: ``<stem>-rto.png``."""
    return f"{out.stem}-rto.png"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _badge(result: str) -> str:
    return f"**{result}**" if result in (FAIL, PASS, SIGNED_OFF) else result


def _code(gate_id: str | None) -> str:
    return f"`{gate_id}`" if gate_id else "unmapped"


def _passed(result: GoNoGo) -> list[str]:
    signed = [g for g in result.signed_off if g.item.mandatory]
    if not signed:
        return ["Every mandatory gate passed.", ""]
    ids = ", ".join(_code(g.gate_id) for g in signed)
    return [f"Every mandatory gate passed; {len(signed)} of them signed off by a person ({ids}).", ""]


def _why(result: GoNoGo) -> list[str]:
    if result.verdict == "GO":
        return _passed(result)
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
    counts = {s: sum(1 for g in blocking if g.result == s) for s in BLOCKING_ORDER}
    lines += [
        "",
        f"{counts[FAIL]} failed, {counts[LAB_ONLY]} lab only, {counts[NOT_RUN]} not run, {counts[MANUAL]} "
        "manual. GO requires every mandatory gate to PASS (or, for a gate only a person can judge, to be "
        "SIGNED OFF): a PASS (lab only) gate needs the same evidence from a run on a real cluster, a NOT RUN "
        "gate needs a run that exercises it, and a MANUAL gate has no automated check here, so it needs a "
        "person's sign-off (`--signoffs`); none of them counts as PASS.",
        "",
    ]
    return lines


def _target_cell(target: Target) -> str:
    return target.describe() if target.production else f"{target.describe()} (not production evidence)"


def _runs_table(result: GoNoGo, ctx: GateContext, plotted: bool) -> list[str]:
    labels = column_labels([r.summary for r in result.runs])
    rows = []
    for run, columns in zip(result.runs, labels, strict=True):
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
        row = [
            run.run_id,
            _target_cell(run.target),
            what,
            str(len(run.tenants)),
            fmt_rto(run.results()),
            "cannot tell" if lost is None else str(lost),
            verdict,
            ctx.link(run, report, report),
        ]
        if plotted:
            row.insert(1, ", ".join(columns) or "none (no fault)")
        rows.append(row)
    header = ["run", "target", "experiment / fault", "tenants", "worst RTO", "lost writes", "verdict", "link"]
    if plotted:
        header.insert(1, "RTO plot column")
    return ["## Runs", "", *(_table(header, rows) if rows else ["No runs."]), ""]


def _evidence_link(signoff: SignOff) -> str:
    link = signoff.evidence
    if link.startswith(("http://", "https://")):
        return f"[{link}](<{link}>)"
    return f"`{link}`"


def _signoffs(result: GoNoGo) -> list[str]:
    if not result.signoffs:
        pending = [g for g in result.gates if g.result == MANUAL and g.gate_id in signable_gates()]
        if not pending:
            return []
        ids = ", ".join(_code(g.gate_id) for g in pending)
        return [
            "## Sign-offs",
            "",
            f"None given. A person may sign off {ids} (`python -m reports gonogo --signoffs-template` "
            "writes the file to fill in; pass it with `--signoffs`).",
            "",
        ]
    rows = [
        [
            _code(o.signoff.gate),
            o.signoff.name,
            o.signoff.role,
            o.signoff.date,
            o.signoff.statement,
            _evidence_link(o.signoff),
            "applied: SIGNED OFF" if o.applied else f"ignored: {o.note}",
        ]
        for o in result.signoffs
    ]
    header = ["gate", "signed by", "role", "date", "statement", "evidence", "outcome"]
    note = (
        "A sign-off decides only a gate a person must judge whose result is MANUAL; it never overrides "
        "FAIL, NOT RUN or PASS (lab only)."
    )
    return ["## Sign-offs", "", note, "", *_table(header, rows), ""]


def _relative(path: Path, ctx: GateContext) -> str:
    return os.path.relpath(path.resolve(), ctx.base).replace(os.sep, "/")


def _header(
    result: GoNoGo, ctx: GateContext, checklist_path: Path | None, signoffs_path: Path | None
) -> list[str]:
    lines = [f"# Go/No-Go: {result.checklist.title}", ""]
    lines.append(f"- Generated: {utc_iso(time.time())} (UTC)")
    lines.append(f"- Runs: {', '.join(ctx.link(r) for r in result.runs) or 'none'}")
    if result.sweeps:
        shown = ", ".join(f"{ctx.sweep_link(s)} ({_target_cell(s.target)})" for s in result.sweeps)
        lines.append(f"- Capacity sweeps (evidence for the concurrency gate): {shown}")
    if checklist_path is not None:
        lines.append(f"- Checklist: `{_relative(checklist_path, ctx)}`")
    if signoffs_path is not None or result.signoffs:
        applied = sum(1 for o in result.signoffs if o.applied)
        source = f"`{_relative(signoffs_path, ctx)}`: " if signoffs_path is not None else ""
        lines.append(f"- Sign-offs: {source}{len(result.signoffs)} given, {applied} applied (see Sign-offs)")
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
    "says which and why). NOT RUN: no run exercised it. MANUAL: nothing here can check it. SIGNED OFF: a "
    "gate only a person can judge, MANUAL here, signed off by a named person (who, role, date, statement "
    "and evidence are in its evidence and under Sign-offs); it counts as passed. A sign-off never changes "
    "any other result. A run's NO-GO "
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

_PLOT_CAPTION = (
    "One column per fault of each run, labelled by the fault's kind (a kind seen again reads `#2`, `#3`...; "
    "the runs table gives each column's run), one point per tenant (hollow: the fault did not affect it), "
    "on a logarithmic scale. The dashed line is the objective; a red cross on the shaded band above it, "
    "marked no RTO, is a tenant that never recovered. The worst RTO of each column is written above it."
)


def render_gonogo(
    result: GoNoGo,
    *,
    document: Path,
    checklist_path: Path | None = None,
    plot: str | None = None,
    signoffs_path: Path | None = None,
) -> str:
    """The go/no-go markdown; ``plot`` is the combined RTO plot's path relative to the document."""
    ctx = GateContext(result.runs, document.parent.resolve(), document, result.sweeps)
    lines = _header(result, ctx, checklist_path, signoffs_path)
    lines += _why(result)
    sections = list(dict.fromkeys(g.item.section for g in result.gates))
    for section in sections:
        gates = [g for g in result.gates if g.item.section == section]
        kind = "mandatory" if gates[0].item.mandatory else "not gates: listed for information"
        lines += [f"## {section} ({kind})", ""]
        rows = [[g.item.text, _code(g.gate_id), _badge(g.result), "<br>".join(g.evidence)] for g in gates]
        lines += [*_table(["gate", "id", "result", "evidence"], rows), ""]
    lines += _signoffs(result)
    lines += _runs_table(result, ctx, plotted=bool(plot))
    if plot:
        target = f"<{plot}>" if " " in plot else plot
        lines += [
            "## RTO across runs",
            "",
            f"![RTO per tenant per fault across runs]({target})",
            "",
            _PLOT_CAPTION,
            "",
        ]
    if result.checklist.rules:
        lines += ["## The checklist's decision rule", "", *[f"- {r}" for r in result.checklist.rules], ""]
    lines += ["## How gates are decided", "", _HOW, ""]
    return "\n".join(lines).rstrip("\n") + "\n"
