"""The go/no-go report a person reads: ``report.md``.

The verdict comes first (with every violation), then the objective, the load (p99
write latency and efficiency, when measured; a cluster load's workers and whether
their journals all arrived), a soak's section when the run was a soak
(:mod:`reports.soak_report`: hours planned and covered, complete or not, violations,
backup age, drills, slopes and its plots), one table per fault, the whole-run
totals, the plots and how each number was measured. A value the analysis could not
know is written "cannot tell" (with the analysis' note), never 0.
Plot paths are used as given, so pass paths relative to the report's folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from probes.latency import ALL_TENANTS
from probes.model import FaultResult, LoadLife, RunAnalysis, TenantResult, TenantTotals
from probes.trust import worker_gap, worker_name
from reports.soak_report import soak_section
from reports.times import utc_iso

__all__ = ["CANNOT_TELL", "render_report"]

CANNOT_TELL = "cannot tell"


def _cell(value: object) -> str:
    """A table cell: pipes escaped, newlines flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _seconds(value: float | None, digits: int = 2) -> str:
    return CANNOT_TELL if value is None else f"{value:.{digits}f}"


def _count(value: int | None) -> str:
    return CANNOT_TELL if value is None else str(value)


def _time(epoch: float | None) -> str:
    text = utc_iso(epoch)
    return CANNOT_TELL if text is None else text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _rto_cell(result: TenantResult) -> str:
    if not result.recovered:
        return "not recovered"
    return _seconds(result.rto_seconds)


def _gap_cell(result: TenantResult) -> str:
    text = _seconds(result.max_ack_gap_seconds)
    return f"{text} (still open)" if result.gap_open and result.max_ack_gap_seconds is not None else text


def _fault_section(index: int, fault_result: FaultResult, analysis: RunAnalysis) -> list[str]:
    fault = fault_result.fault
    target = fault.target or "no single tenant"
    lines = [f"### Fault {index}: {fault.name}", ""]
    lines.append(
        f"Kind `{fault.kind}`, aimed at {target}, injected {_time(fault.injected_at)}"
        + (f", injection ended {_time(fault.ended_at)}." if fault.ended_at is not None else ".")
    )
    if analysis.started_at is not None:
        lines[-1] += f" That is {fault.injected_at - analysis.started_at:.1f} s after the run started."
    seen = fault.details.get("explanation")
    if isinstance(seen, str) and seen:
        lines += ["", f"What happened next: {seen}."]
    lines.append("")
    rows = []
    notes = []
    for r in fault_result.results:
        rows.append(
            [
                r.tenant,
                "yes" if r.affected else "no",
                "yes" if r.recovered else "**no**",
                _rto_cell(r),
                _gap_cell(r),
                str(r.acked_writes),
                str(r.failed_writes),
                str(r.unknown_writes),
                _count(r.lost_acked_writes),
                _seconds(r.rpo_seconds),
            ]
        )
        if r.note:
            notes.append(f"- {r.tenant}: {r.note}")
    header = [
        "tenant",
        "affected",
        "recovered",
        "RTO s",
        "max ack gap s",
        "acked",
        "failed",
        "unknown",
        "lost",
        "RPO s",
    ]
    lines += _table(header, rows) if rows else ["No tenant results for this fault."]
    if notes:
        lines += ["", "Notes:", *notes]
    lines.append("")
    return lines


def _skew(value: float | None) -> str:
    return CANNOT_TELL if value is None else f"{value * 1000:+.1f} ms"


def _totals_section(totals: list[TenantTotals]) -> list[str]:
    lines = ["## Totals per tenant", ""]
    header = [
        "tenant",
        "attempts",
        "acked",
        "failed",
        "unknown",
        "lost",
        "unexpected",
        "recovered unknown",
        "clock skew",
    ]
    rows = [
        [
            t.tenant,
            str(t.attempts),
            str(t.acked),
            str(t.failed),
            str(t.unknown),
            _count(t.lost),
            _count(t.unexpected),
            _count(t.recovered_unknown),
            _skew(t.clock_skew_seconds),
        ]
        for t in totals
    ]
    lines += _table(header, rows) if rows else ["No totals: the journal held no writes."]
    lines.append("")
    for t in totals:
        if t.readback_error:
            lines.append(
                f"- {t.tenant}: read-back failed ({t.readback_error}); lost and unexpected writes: "
                f"{CANNOT_TELL}."
            )
        if t.journal_incomplete:
            lines.append(
                f"- {t.tenant}: journal incomplete ({t.journal_incomplete}); lost and unexpected writes: "
                f"{CANNOT_TELL}."
            )
        if t.lost_keys:
            shown = ", ".join(f"({w}, {s})" for w, s in t.lost_keys[:20])
            more = f" and {len(t.lost_keys) - 20} more" if len(t.lost_keys) > 20 else ""
            lines.append(f"- {t.tenant}: lost acknowledged writes (writer, seq): {shown}{more}.")
    if lines[-1] != "":
        lines.append("")
    lines.append("Clock skew is server clock minus client clock, sampled at the start of the run.")
    lines.append("")
    return lines


def _how_measured(analysis: RunAnalysis) -> list[str]:
    stability = f"{analysis.stability_seconds:g}"
    sentences = [
        "Every write attempt of the load is recorded in the acknowledged-write journal with its outcome:",
        "acknowledged by the server (ok), certainly failed (fail), or unknown (a timeout or a connection",
        "lost mid-call). **RTO** is client-observed, per tenant and per fault: the time from the fault's",
        "injection to the first acknowledged write after which writes kept succeeding for the",
        f"{stability} s stability period. A tenant that never got there did not recover and has no RTO.",
        "The **max ack gap** is the longest time between two acknowledged writes around the fault, so",
        "calls that blocked are caught as well as calls that failed. **RPO** comes from reading every",
        "tenant's rows back after the run and comparing them with the acknowledged-write journal:",
        "lost = acknowledged but not found (must be 0); unexpected = found but never attempted;",
        "unknown-outcome writes that were found count as recovered, not lost. The RPO seconds are the",
        "loss window, from the earliest lost acknowledged write to the fault. Timestamps are wall-clock",
        "UTC; durations come from a monotonic clock.",
        f'"{CANNOT_TELL.capitalize()}" means the harness has no data to know the value (for example',
        "the read-back failed); it is never counted as 0.",
    ]
    return ["## How measured", "", " ".join(sentences), ""]


def _flat(prefix: str, value: Any) -> list[list[str]]:
    if isinstance(value, Mapping):
        return [row for k, v in value.items() for row in _flat(f"{prefix}.{k}" if prefix else str(k), v)]
    if isinstance(value, list) and len(value) > 3:
        return [[prefix, f"{len(value)} entries (see summary.json)"]]
    return [[prefix, value if isinstance(value, str) else json.dumps(value, default=str)]]


def _control_plane_section(observed: Mapping[str, Any]) -> list[str]:
    rows = _flat("", observed)
    if not rows:
        return []
    return [
        "## Control plane",
        "",
        "Seconds from the fault, seen through the Kubernetes API: reported beside the client-observed "
        "RTO, not instead of it.",
        "",
        *_table(["measure", "value"], rows),
        "",
    ]


def _extra_section(extra: Mapping[str, Any]) -> list[str]:
    rows = _flat("", {k: v for k, v in extra.items() if k not in ("control_plane", "soak")})
    section = ["## Run", "", *_table(["field", "value"], rows), ""] if rows else []
    return section + _control_plane_section(extra.get("control_plane") or {})


def _evidence_class(target: Any) -> list[str]:
    """One line saying what this run can prove: only a real cluster is production evidence."""
    kind = target.get("kind") if isinstance(target, Mapping) else None
    if kind == "cluster":
        where = target.get("api_server") or "a cluster"
        return [f"Target: the cluster at {where}: production evidence for the operator under test.", ""]
    what = {
        "lab": "the embedded lab (PostgreSQL standing in for SQL Server, the lab operator)",
        "local": "local PostgreSQL servers, no Kubernetes",
    }.get(str(kind), "not recorded")
    lines = [
        f"Target: {what}. This run proves the harness and the stand-ins, not the operator under test: "
        "it is not production evidence.",
    ]
    if kind == "lab":
        timing = target.get("timing") if isinstance(target.get("timing"), Mapping) else {}
        described = timing.get("description") or timing.get("profile")
        lines.append(
            f"Lab timing: {described}."
            if described
            else "Lab timing: not recorded (cannot tell how fast the lab declared nodes lost)."
        )
        if timing.get("profile") == "fast":
            lines[-1] += " Recovery times under this profile are shorter than Kubernetes' defaults allow."
    return [*lines, ""]


def _ms(value: Any) -> str:
    return CANNOT_TELL if value is None else f"{float(value):.1f} ms"


def _rate(value: Any) -> str:
    return CANNOT_TELL if value is None else f"{float(value):.1f}"


def _cluster_line(load: LoadLife | None) -> list[str]:
    """A cluster load: how many workers, and whether every worker's journal reached the master."""
    if load is None or load.mode != "cluster":
        return []
    workers = CANNOT_TELL if load.workers is None else str(load.workers)
    collection = load.collection
    if collection is None:
        state = f"whether every worker's journal arrived: {CANNOT_TELL} (no collection status)"
    else:
        gaps = [f"{worker_name(w)}: {gap}" for w in collection.workers if (gap := worker_gap(w)) is not None]
        if gaps:
            state = "journals incomplete: " + "; ".join(gaps)
        elif collection.complete:
            state = "every worker's journal arrived complete"
        else:
            state = f"journals incomplete ({CANNOT_TELL} which worker's)"
    problems = "".join(f" Problem: {p}." for p in load.problems)
    return [f"- Cluster load: {workers} Locust worker pod(s) and a master; {state}.{problems}"]


def _load_section(
    latency: Mapping[str, Any] | None, efficiency: Mapping[str, Any] | None, load: LoadLife | None = None
) -> list[str]:
    """One line: p99 write latency over every tenant and the load's efficiency (and a cluster load's)."""
    cluster = _cluster_line(load)
    if latency is None and efficiency is None:
        return ["## Load", "", *cluster, ""] if cluster else []
    merged = (latency or {}).get(ALL_TENANTS) or {}
    eff = efficiency or {}
    share = eff.get("efficiency")
    count = merged.get("count")
    measured = (
        f"{count} acknowledged writes outside outages, from their scheduled time where known"
        if count is not None
        else "not measured"
    )
    line = (
        f"- Write latency p99 {_ms(merged.get('p99_ms'))} (all tenants, {measured}; "
        f"late starts {merged.get('late_starts', CANNOT_TELL)}); efficiency "
        f"{CANNOT_TELL if share is None else f'{float(share):.3f}'} "
        f"({_rate(eff.get('acked_per_second'))} acknowledged of {_rate(eff.get('offered_per_second'))} "
        "offered writes/s)."
    )
    return ["## Load", "", line, *cluster, ""]


def render_report(
    analysis: RunAnalysis,
    plots: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
    *,
    latency: Mapping[str, Any] | None = None,
    efficiency: Mapping[str, Any] | None = None,
    soak: Mapping[str, Any] | None = None,
    soak_plots: Mapping[str, str] | None = None,
) -> str:
    """The report as markdown text. ``plots`` maps a caption to an image path (relative to the report).

    ``latency`` and ``efficiency`` are summary.json's blocks; given, a "Load" section shows them.
    ``soak`` is summary.json's ``soak`` block (default: ``extra["soak"]``); given, a "Soak"
    section shows it with ``soak_plots`` (caption -> image path, as ``plots``).
    """
    go = analysis.verdict == "GO"
    lines = [f"# Chaos run {analysis.run_id}: {analysis.verdict}", ""]
    if go:
        lines.append(
            "**Verdict: GO**: every tenant recovered within the objective after every fault and no "
            "acknowledged write was lost."
        )
    else:
        count = len(analysis.violations)
        lines.append(f"**Verdict: {analysis.verdict}**: {count} violation{'s' if count != 1 else ''}:")
        lines.append("")
        lines += [f"- {v}" for v in analysis.violations] or ["- (no violation recorded)"]
    lines.append("")
    lines += _evidence_class((extra or {}).get("target"))
    lines += [
        "## Objective",
        "",
        f"- RTO at most {analysis.objective.rto_seconds:g} s per tenant per fault "
        f"(stability period {analysis.stability_seconds:g} s).",
        f"- RPO at most {analysis.objective.rpo_seconds:g} s: no acknowledged write may be lost.",
        f"- Tenants: {', '.join(analysis.tenants) if analysis.tenants else 'none'}.",
        f"- Run from {_time(analysis.started_at)} to {_time(analysis.ended_at)}.",
        "",
    ]
    lines += _load_section(latency, efficiency, analysis.load)
    soak_block = soak if soak is not None else (extra or {}).get("soak")
    if isinstance(soak_block, Mapping):
        lines += soak_section(soak_block, soak_plots)
    lines += _extra_section(extra or {})
    lines += ["## Faults", ""]
    if not analysis.faults:
        lines += ["No fault was injected in this run.", ""]
    for index, fault_result in enumerate(analysis.faults, start=1):
        lines += _fault_section(index, fault_result, analysis)
    lines += _totals_section(analysis.totals)
    if plots:
        lines += ["## Plots", ""]
        for caption, path in plots.items():
            target = f"<{path}>" if " " in path else path
            lines += [f"### {caption}", "", f"![{_cell(caption)}]({target})", ""]
    lines += _how_measured(analysis)
    return "\n".join(lines).rstrip("\n") + "\n"
