"""Every gate by its id, and the one rule that turns a lab PASS into ``PASS (lab only)``.

``GATES`` maps each gate id to the function that decides it: the run gates here
(instance Ready, concurrency, failure injection, RTO, this document, and the lines
only a person can sign), the cluster-setup gates (``reports.gates_cluster``), the
backup and restore gates (``reports.gates_backup``), the alerting drill's gate
(``reports.gates_alerting``) and the soak gate (``reports.gates_soak``: only runs with a
``soak`` block count, never a plain long run). ``judge(gate_id, ctx)`` decides one.

**Lab only.** A gate is PASS only when the runs on a real cluster (target kind
``cluster``) prove it by themselves. When its PASS needs a run from the embedded lab, a
local run or a summary that does not record a cluster target, it reads ``PASS (lab
only)``: that evidence proves the harness and the lab operator, not the operator under
test, so it cannot make the document GO. A FAIL stays a FAIL wherever it ran: a release
gate fails closed.

**Which gate a run exercises** (its ``run_problems`` FAIL that gate): failure injection
for operator-restart, pod-eviction, node-drain and node-restart runs; the restore gate
for ``pitr-restore``; the backup gate for ``backup-under-chaos``; multi-tenant
concurrency for runs without an experiment (local runs). A chaos status failure or a
failed rollback also FAILs failure injection, whatever the experiment. Any RTO over the
objective (the stricter of the run's and the checklist's 60 s) or a tenant that never
recovered FAILs the RTO gate; lost acknowledged writes in a run of two or more tenants
FAIL the concurrency gate.

**Capacity sweeps** (folders holding ``capacity.json``) are evidence for the concurrency
gate only: it cites, per write rate, the largest tenant count that passed with the
sweep's fault at every step, linking the sweep's ``capacity.md``. A step that fails is
how a sweep finds its boundary, not a failure of the gate, but a write rate at which no
count passed, acknowledged writes lost at any step, or a largest passing count whose own
steps did not pass (or say NO-GO) FAIL it. A sweep that is incomplete, has no step, or
cannot show that its largest passing count lost nothing holds the gate at NOT RUN even
when runs pass it. A sweep whose target is not a real cluster counts as lab evidence, so
its PASS reads ``PASS (lab only)``, as for runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reports import gates_alerting, gates_backup, gates_cluster, gates_soak
from reports.capacity_data import answers, boundary, fmt_rate, measure, steps_at, steps_of, write_rates
from reports.gate_base import (
    FAIL,
    LAB_ONLY,
    NOT_RUN,
    PASS,
    Decide,
    GateContext,
    Verdict,
    combine,
    manual,
    problems_of,
    registrar,
)
from reports.gonogo_runs import (
    BACKUP_KINDS,
    CHECKLIST_RTO_SECONDS,
    FAILURE_KINDS,
    REQUIRED_FAILURE_KINDS,
    Run,
    Sweep,
    chaos_problems,
    number,
    rto_findings,
    run_problems,
    steady_state,
)
from reports.times import utc_iso

__all__ = ["GATES", "fmt_rto", "judge"]

UNFINISHED_CHAOS_STATUSES = ("running", "unknown")

_RUN_GATES: dict[str, Decide] = {}
_gate = registrar(_RUN_GATES)

_gate("ci-e2e-pipeline")(manual("planned: not checked by a run", signable=True))
_gate("runbook-peer-validation")(manual("needs a second engineer's sign-off", signable=True))


def fmt_rto(results: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """The worst RTO of these (fault, tenant result) pairs, or why there is none."""
    if any(not r.get("recovered") for _, r in results):
        return "not recovered"
    values = [number(r.get("rto_seconds")) for _, r in results]
    if not values:
        return "no tenant results"
    if any(v is None for v in values):
        return "cannot tell"
    return f"{max(v for v in values if v is not None):.2f} s"


@_gate("instance-ready")
def _instance_ready(ctx: GateContext) -> Verdict:
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
    return combine(
        parts, (NOT_RUN, ["no Kubernetes run recorded a steady-state hypothesis before its fault"])
    )


def _largest_passing_checks(sweep: Sweep, rate: float, tenants: int) -> Verdict:
    """Whether the steps at the largest passing count back it: all passed, GO, nothing lost."""
    steps = [s for s in steps_at(steps_of(sweep.doc), rate) if s.get("tenants") == tenants]
    where = f"N = {tenants} at {fmt_rate(rate)} writes/s"
    if not steps:
        return NOT_RUN, [f"{where} is named the largest passing count, but no step at it is recorded"]
    bad = [s for s in steps if s.get("passed") is not True or s.get("run_verdict") == "NO-GO"]
    if bad:
        trials = ", ".join(str(s.get("trial", "?")) for s in bad)
        return FAIL, [f"{where} is named the largest passing count, but trial(s) {trials} at it did not pass"]
    unknown = [s for s in steps if measure(s, "lost") is None or s.get("run_verdict") != "GO"]
    if unknown:
        return NOT_RUN, [
            f"{where}: cannot tell whether acknowledged writes were lost (loss or verdict unknown)"
        ]
    return PASS, []


def _sweep_part(ctx: GateContext, sweep: Sweep) -> tuple[Verdict, tuple[int, float] | None]:
    """The sweep's verdict for the concurrency gate; when it passes, its largest passing count and rate."""
    link = ctx.sweep_link(sweep)
    if not steps_of(sweep.doc):
        return (NOT_RUN, [f"capacity sweep {link}: no step ran, so it has no result"]), None
    shown = f"capacity sweep {link}"
    if not sweep.target.production:
        shown += f" ({sweep.target.short}: not production evidence)"
    lines = [f"{shown}: {sentence}" for sentence in answers(sweep.doc)]
    lost = [
        f"{link}: {measure(s, 'lost'):.0f} acknowledged write(s) lost at N = {s.get('tenants')}, "
        f"{fmt_rate(measure(s, 'write_rate') or 0.0)} writes/s, trial {s.get('trial', '?')}"
        for s in steps_of(sweep.doc)
        if (measure(s, "lost") or 0) > 0
    ]
    parts: list[Verdict] = [(FAIL, lost)] if lost else []
    best: tuple[int, float] | None = None
    for rate in write_rates(sweep.doc):
        found = boundary(sweep.doc, rate)
        if found.largest_passing is None:
            ran = bool(steps_at(steps_of(sweep.doc), rate))
            parts.append((FAIL, []) if ran and found.first_failing is not None else (NOT_RUN, []))
            continue
        if found.largest_passing < 2:  # concurrency needs two tenants, as for runs
            fewer = f"{link}: no count of two or more tenants passed at {fmt_rate(rate)} writes/s"
            parts.append((FAIL if found.first_failing is not None else NOT_RUN, [fewer]))
            continue
        status, why = _largest_passing_checks(sweep, rate, found.largest_passing)
        parts.append((status, [f"{link}: {w}" for w in why]))
        if best is None or found.largest_passing > best[0]:
            best = (found.largest_passing, rate)
    statuses = {status for status, _ in parts}
    status = FAIL if FAIL in statuses else NOT_RUN if NOT_RUN in statuses else PASS
    if status == PASS and sweep.incomplete:
        status = NOT_RUN
    if status != FAIL and sweep.incomplete:
        lines.append(
            f"capacity sweep {link} is incomplete ({sweep.incomplete}): what it reached is not a result; "
            "run the sweep to the end"
        )
    evidence = lines + [e for _, why in parts for e in why]
    return (status, evidence), best if status == PASS else None


def _headline(ctx: GateContext, sweeps: list[tuple[Sweep, tuple[int, float]]]) -> str:
    """``N = <largest>``; with a sweep given, from real-cluster evidence when any passed, else from all."""
    found = [
        (len(r.tenants), r.target.production, "") for r in ctx.runs if r.lost() == 0 and len(r.tenants) >= 2
    ]
    found += [
        (
            n,
            s.target.production,
            f" (capacity sweep {s.sweep_id}: largest passing at {fmt_rate(rate)} writes/s "
            f"under {s.fault or 'an unrecorded fault'})",
        )
        for s, (n, rate) in sweeps
    ]
    production = [f for f in found if f[1]] if sweeps else []
    n, _, where = max(production or found, key=lambda f: f[0])
    return f"N = {n}{where}"


@_gate("multi-tenant-concurrency")
def _concurrency(ctx: GateContext) -> Verdict:
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
    local_runs = [
        r for r in ctx.runs if not r.is_k8s and not r.failure_kinds() and r.fault not in BACKUP_KINDS
    ]
    parts += problems_of(ctx, local_runs)
    judged = [(sweep, _sweep_part(ctx, sweep)) for sweep in ctx.sweeps]
    sweep_parts = [part for _, (part, _) in judged]
    status, evidence = combine(
        parts + sweep_parts, (NOT_RUN, ["no run with two or more tenants and a known loss count"])
    )
    holding = [e for part in sweep_parts if part[0] == NOT_RUN for e in part[1]]
    if status == PASS and holding:  # an unfinished sweep cannot leave the gate a PASS
        return NOT_RUN, holding + [e for e in evidence if e not in holding]
    if status == PASS:
        passing = [(sweep, best) for sweep, (_, best) in judged if best is not None]
        evidence = [_headline(ctx, passing), *evidence]
    return status, evidence


@_gate("failure-injection")
def _failure_injection(ctx: GateContext) -> Verdict:
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
        line = f"{kind}: {status_by_kind[kind]}, worst RTO {fmt_rto(results)} ({links})"
        lines.append(line + (f": {'; '.join(bad)}" if bad else ""))
    others = [r for r in ctx.runs if not r.failure_kinds()]
    elsewhere = [f"{ctx.link(r)} ({r.fault or 'local run'}): {p}" for r in others for p in chaos_problems(r)]
    if failed or elsewhere:
        return FAIL, sorted(lines, key=lambda line: ": FAIL" not in line) + elsewhere
    missing = [k for k in REQUIRED_FAILURE_KINDS if status_by_kind[k] != PASS]
    if missing:
        return NOT_RUN, [f"required but not run: {', '.join(missing)}", *lines]
    return PASS, lines


@_gate("rto-objective")
def _rto(ctx: GateContext) -> Verdict:
    over = [f"{ctx.link(r)}: {f}" for r in ctx.runs for f in rto_findings(r)]
    if over:
        return FAIL, over
    runs = [r for r in ctx.runs if r.failure_kinds() and r.results()]
    if not runs:
        return NOT_RUN, ["no failure-injection run (operator restart, pod eviction, node drain/restart)"]
    worst = fmt_rto([pair for r in runs for pair in r.results()])
    count = sum(len(r.results()) for r in runs)
    return PASS, [
        f"every tenant recovered within {CHECKLIST_RTO_SECONDS:g} s after every fault: worst {worst} "
        f"over {count} tenant-fault pairs in {', '.join(ctx.link(r) for r in runs)}"
    ]


def _unfinished(run: Run) -> list[str]:
    """Why this run's summary cannot stand for the finished run (empty when it can)."""
    out = []
    status = run.summary.get("chaos_status")
    if run.is_k8s and (not status or status in UNFINISHED_CHAOS_STATUSES):
        out.append(
            f"chaos status {status or 'not recorded'} in summary.json: the experiment had not finished when "
            "it was summarised; rebuild it with `python -m reports build` after the run ends"
        )
    generated, ended = run.epoch("generated_at"), run.epoch("ended_at")
    if generated is None or ended is None:
        missing = "when it was generated" if generated is None else "when the run's data ended"
        out.append(f"summary.json does not record {missing}; rebuild it with `python -m reports build`")
    elif generated < ended:
        out.append(
            f"summary.json was generated at {utc_iso(generated)}, before the run's data ended at "
            f"{utc_iso(ended)}: it is stale; rebuild it with `python -m reports build`"
        )
    return out


@_gate("document-updated")
def _this_document(ctx: GateContext) -> Verdict:
    """Up to date means: every run finished, summarised after its data ended, all on one target."""
    if not ctx.runs:
        return NOT_RUN, ["no run folder given"]
    problems = [f"{ctx.link(r)}: {p}" for r in ctx.runs for p in _unfinished(r)]
    by_target: dict[tuple[str, str | None], list[Run]] = {}
    for run in ctx.runs:
        by_target.setdefault(run.target.identity, []).append(run)
    if len(by_target) > 1:
        mixed = "; ".join(
            f"{kind} at {api or 'an unrecorded API server'}: {', '.join(ctx.link(r) for r in runs)}"
            for (kind, api), runs in by_target.items()
        )
        problems.append(f"the runs come from different targets, so no one deployment was judged: {mixed}")
    if problems:
        return FAIL, problems
    return PASS, [
        f"this document ({ctx.document.name}) judges {len(ctx.runs)} finished run(s), each summarised after "
        f"its data ended, all on one target: {ctx.runs[0].target.describe()}"
    ]


_MODULES = (gates_cluster.GATES, gates_backup.GATES, gates_alerting.GATES, gates_soak.GATES, _RUN_GATES)
GATES: dict[str, Decide] = {k: v for gates in _MODULES for k, v in gates.items()}
if len(GATES) != sum(len(gates) for gates in _MODULES):
    raise ValueError("a gate id is defined in two gate modules")


def judge(gate_id: str, ctx: GateContext) -> Verdict:
    """Decide one gate; a PASS the cluster runs cannot give by themselves becomes ``PASS (lab only)``."""
    decide = GATES[gate_id]
    status, evidence = decide(ctx)
    elsewhere = [r for r in ctx.runs if not r.target.production]
    elsewhere_sweeps = [s for s in ctx.sweeps if not s.target.production]
    if status != PASS or not (elsewhere or elsewhere_sweeps):
        return status, evidence
    production = [r for r in ctx.runs if r.target.production]
    production_sweeps = [s for s in ctx.sweeps if s.target.production]
    alone = decide(ctx.only(production, production_sweeps))[0] if production or production_sweeps else None
    if alone == PASS:
        return status, evidence
    where = ", ".join(
        [f"{ctx.link(r)} ({r.target.short})" for r in elsewhere]
        + [f"capacity sweep {ctx.sweep_link(s)} ({s.target.short})" for s in elsewhere_sweeps]
    )
    cluster = f"the cluster runs alone give {alone}" if alone else "no run on a real cluster"
    return LAB_ONLY, [f"passed only with runs that are not on a real cluster: {where}; {cluster}", *evidence]
