"""Turn a run folder into its report: summary, markdown, plots and Prometheus metrics.

A run folder (``runs/<run-id>/``) holds ``run.json`` (written by the orchestrator:
``run_id``, ``tenants``, ``objective`` {``rto_seconds``, ``rpo_seconds``},
``stability_seconds``, ``started_at``, ``ended_at``, ``target``), the journal
(``journal/*.jsonl``), ``faults.jsonl`` (missing: no faults) and ``readback.json``
(missing: nothing was read back, so losses are unknown and the verdict is NO-GO).
Backup and restore runs add ``pitr.json`` and ``integrity.json`` (written by
``probes.k8s.backup_actions`` and ``probes.k8s.backup_probes``); they become the summary's
``pitr`` and ``integrity`` blocks, taking precedence over blocks of the same name in ``run.json``.

``build`` writes next to them: ``summary.json``, ``report.md`` and its self-contained
``report.html`` (``reports.html``), ``timeline-<tenant>.png`` per tenant, ``rto-rpo.png``
and ``metrics.prom``, and returns the report's (``report.md``'s) path. The journal is
read once, through DuckDB (``probes.columnar.ColumnarJournal``, the same answers as
``probes.analysis``, ``probes.latency`` and ``probes.efficiency``, for a journal of any
size): the analysis, write latency per tenant (outside the outage windows the analysis
found), the load's efficiency (from ``run.json``'s ``write_rate`` and ``load``) and the
timelines' counts. A soak's ``soak/`` folder becomes the summary's ``soak`` block
(``probes.soak_summary``). It can be run again at any time; every output is rewritten
from the same inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from common.files import replace_text
from loadgen.errors import LoadgenError
from loadgen.journal import journal_run_ids, journal_segments
from probes.chaosjournal import failed_activities
from probes.columnar import ColumnarJournal, TimelineCounts
from probes.errors import ProbeError
from probes.faultlog import FAULT_LOG_NAME, read_faults
from probes.latency import outage_windows
from probes.model import (
    Fault,
    LoadCollection,
    LoadLife,
    Objective,
    RunAnalysis,
    RunContext,
    TenantResult,
    WorkerCollection,
)
from probes.observations import read_observations
from probes.pitr import INTEGRITY_NAME, PITR_NAME, read_json_block
from probes.readback import load_readback
from probes.soak_summary import summarize as summarize_soak
from reports.errors import ReportError
from reports.html import write_html
from reports.jsonfile import optional_object, read_object
from reports.markdown import render_report
from reports.plots import rto_rpo_plot, timeline_edges, timeline_plot
from reports.prom import write_metrics
from reports.soak_report import soak_plots
from reports.summary import write_summary
from reports.times import parse_time

__all__ = [
    "METRICS_NAME",
    "REPORT_NAME",
    "RTO_PLOT_NAME",
    "SUMMARY_NAME",
    "RunMeta",
    "build",
    "read_backup_blocks",
    "read_run_meta",
    "timeline_name",
]

RUN_META_NAME = "run.json"
JOURNAL_DIR = "journal"
READBACK_NAME = "readback.json"
REPORT_NAME = "report.md"
SUMMARY_NAME = "summary.json"
METRICS_NAME = "metrics.prom"
RTO_PLOT_NAME = "rto-rpo.png"
DEFAULT_STABILITY = 5.0


@dataclass(frozen=True)
class RunMeta:
    """What ``run.json`` says about the run (defaults where it says nothing)."""

    run_id: str
    tenants: list[str]
    objective: Objective
    stability_seconds: float
    started_at: float | None
    ended_at: float | None
    target: Any
    passthrough: dict[str, Any] = field(default_factory=dict)
    context: RunContext = field(default_factory=RunContext)


#: run.json keys copied as they are into summary.json (set by the Chaos Toolkit control).
PASSTHROUGH_KEYS = ("experiment", "chaos_status", "interrupted", "pitr", "integrity", "load")
CHAOS_JOURNAL_NAME = "chaos-journal.json"


def _number(doc: dict[str, Any], key: str, default: float, path: Path) -> float:
    value = doc.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ReportError(
            f"{path}: {key!r} must be a non-negative number of seconds, got {value!r}; fix run.json"
        )
    return float(value)


def read_run_meta(run_dir: Path) -> RunMeta:
    """Read and check ``run_dir/run.json``; ReportError names the file and the fix."""
    path = Path(run_dir) / RUN_META_NAME
    if not Path(run_dir).is_dir():
        raise ReportError(f"run folder {run_dir} does not exist; pass the folder of a run (runs/<run-id>/)")
    if not path.is_file():
        raise ReportError(
            f"{path} is missing; pass a run folder written by the orchestrator, or write run.json "
            '({"run_id": ..., "tenants": [...]}) by hand'
        )
    doc = read_object(path, "fix or rewrite run.json")
    tenants = doc.get("tenants") or []
    if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise ReportError(f"{path}: 'tenants' must be a list of tenant names; fix run.json")
    objective_doc = doc.get("objective") or {}
    if not isinstance(objective_doc, dict):
        raise ReportError(
            f"{path}: 'objective' must be an object with rto_seconds and rpo_seconds; fix run.json"
        )
    default = Objective()
    objective = Objective(
        rto_seconds=_number(objective_doc, "rto_seconds", default.rto_seconds, path),
        rpo_seconds=_number(objective_doc, "rpo_seconds", default.rpo_seconds, path),
    )
    return RunMeta(
        context=_context(doc, Path(run_dir), path),
        run_id=str(doc.get("run_id") or Path(run_dir).resolve().name),
        tenants=list(tenants),
        objective=objective,
        stability_seconds=_number(doc, "stability_seconds", DEFAULT_STABILITY, path),
        started_at=parse_time(doc.get("started_at")),
        ended_at=parse_time(doc.get("ended_at")),
        target=doc.get("target"),
        passthrough={k: doc[k] for k in PASSTHROUGH_KEYS if k in doc},
    )


LOAD_MODES = ("local", "cluster")


def _bad(path: Path, key: str, what: str) -> ReportError:
    return ReportError(f"{path}: {key!r} must be {what}; fix run.json")


def _count_of(doc: dict[str, Any], key: str, where: str, path: Path, *, optional: bool = False) -> int | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(path, f"{where}.{key}", "a non-negative whole number")
    return value


def _worker_collection(doc: Any, where: str, path: Path) -> WorkerCollection:
    if not isinstance(doc, dict):
        raise _bad(path, where, "an object (one worker's collection)")
    worker, tenants, missing, final, reason = (
        doc.get(k) for k in ("worker", "tenants", "missing", "final", "reason")
    )
    if worker is not None and not isinstance(worker, str):
        raise _bad(path, f"{where}.worker", "the worker's id (a string) or null")
    if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise _bad(path, f"{where}.tenants", "a list of tenant names")
    pairs = missing or []
    if not isinstance(pairs, list) or not all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in r)
        for r in pairs
    ):
        raise _bad(path, f"{where}.missing", "a list of [lo, hi] batch ranges")
    if final is not None and not isinstance(final, dict):
        raise _bad(path, f"{where}.final", "an object {batches, records} or null")
    return WorkerCollection(
        index=_count_of(doc, "index", where, path) or 0,
        worker=worker,
        tenants=tuple(tenants),
        batches=_count_of(doc, "batches", where, path) or 0,
        missing=tuple((lo, hi) for lo, hi in pairs),
        records=_count_of(doc, "records", where, path) or 0,
        final_batches=None if final is None else _count_of(final, "batches", f"{where}.final", path),
        final_records=None if final is None else _count_of(final, "records", f"{where}.final", path),
        complete=doc.get("complete") is True,
        reason=str(reason) if reason else None,
    )


def _collection(value: Any, path: Path) -> LoadCollection | None:
    """``load.collection``; None when absent (the analysis then trusts no tenant's losses)."""
    if value is None:
        return None
    where = "load.collection"
    if not isinstance(value, dict):
        raise _bad(path, where, "an object (the cluster load's journal collection)")
    workers = value.get("workers") or []
    if not isinstance(workers, list):
        raise _bad(path, f"{where}.workers", "a list of workers")
    return LoadCollection(
        expected_workers=_count_of(value, "expected_workers", where, path) or 0,
        complete=value.get("complete") is True,
        workers=tuple(_worker_collection(w, f"{where}.workers[{i}]", path) for i, w in enumerate(workers)),
    )


def _load_life(value: Any, path: Path) -> LoadLife | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ReportError(f"{path}: 'load' must be an object (the load's life); fix run.json")
    code = value.get("exit_code")
    mode = value.get("mode") or "local"
    if mode not in LOAD_MODES:
        raise _bad(path, "load.mode", f"one of {', '.join(LOAD_MODES)} (got {mode!r})")
    problems = value.get("problems") or []
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        raise _bad(path, "load.problems", "a list of sentences")
    return LoadLife(
        started_at=parse_time(value.get("started_at")),
        stop_requested_at=parse_time(value.get("stop_requested_at")),
        ended_at=parse_time(value.get("ended_at")),
        exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        died_at=parse_time(value.get("died_at")),
        mode=mode,
        workers=_count_of(value, "workers", "load", path, optional=True),
        collection=_collection(value.get("collection"), path) if mode == "cluster" else None,
        problems=tuple(problems),
    )


def _context(doc: dict[str, Any], run_dir: Path, path: Path) -> RunContext:
    """Chaos Toolkit's status, failed activities, harness errors and the load's life."""
    status = doc.get("chaos_status")
    failed = [f"{name} failed: {why}" for name, why in failed_activities(_chaos_journal(run_dir))]
    failed += [f"harness control failed: {e}" for e in doc.get("harness_errors") or []]
    rate = doc.get("write_rate")
    return RunContext(
        chaos_status=str(status) if status else None,
        failed_activities=tuple(failed),
        load=_load_life(doc.get("load"), path),
        write_rate=float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None,
    )


def _chaos_journal(run_dir: Path) -> dict[str, Any] | None:
    return optional_object(run_dir / CHAOS_JOURNAL_NAME, "fix or remove the chaos journal")


def check_run_ids(run_dir: Path, run_id: str) -> None:
    """Refuse a journal written by another run: the read-back selects rows by run id."""
    found = journal_run_ids(Path(run_dir) / JOURNAL_DIR)
    others = {rid: paths for rid, paths in found.items() if rid != run_id}
    if others:
        rid, paths = next(iter(sorted(others.items())))
        raise ReportError(
            f"run.json names run {run_id!r} but {Path(run_dir) / JOURNAL_DIR / paths[0].name} was written "
            f"by run {rid!r}: the journal belongs to another run; pass that run's folder or move the file out"
        )


def read_backup_blocks(run_dir: Path) -> dict[str, Any]:
    """The ``pitr`` and ``integrity`` blocks from ``pitr.json`` / ``integrity.json`` (absent files: none)."""
    blocks: dict[str, Any] = {}
    for key, name in (("pitr", PITR_NAME), ("integrity", INTEGRITY_NAME)):
        try:
            doc = read_json_block(Path(run_dir) / name)
        except ProbeError as exc:
            raise ReportError(str(exc)) from None
        if doc is not None:
            blocks[key] = doc
    return blocks


def timeline_name(tenant: str) -> str:
    """``timeline-<tenant>.png``, with characters unsafe in file names replaced by ``_``."""
    return f"timeline-{re.sub(r'[^A-Za-z0-9._-]', '_', tenant)}.png"


def _widen(analysis: RunAnalysis, meta: RunMeta) -> RunAnalysis:
    """The run spans from the earlier start to the later end of run.json and the journal."""
    starts = [t for t in (analysis.started_at, meta.started_at) if t is not None]
    ends = [t for t in (analysis.ended_at, meta.ended_at) if t is not None]
    return replace(
        analysis,
        started_at=min(starts) if starts else None,
        ended_at=max(ends) if ends else None,
    )


def _judge_soak(analysis: RunAnalysis, soak: dict[str, Any]) -> RunAnalysis:
    """A soak's violations, and a soak that did not finish its planned time, make the run NO-GO."""
    problems = [f"soak: {v.get('text')}" for v in soak.get("violations") or []]
    if not soak.get("complete"):
        problems.append(f"soak incomplete: {soak.get('incomplete_reason') or 'no end.json'}")
    if not problems:
        return analysis
    return replace(analysis, verdict="NO-GO", violations=[*analysis.violations, *problems])


def _tenant_results(analysis: RunAnalysis, tenant: str) -> list[TenantResult | None]:
    out: list[TenantResult | None] = []
    for fault_result in analysis.faults:
        mine = [r for r in fault_result.results if r.tenant == tenant]
        out.append(mine[0] if mine else None)
    return out


def _plots(
    run_dir: Path, analysis: RunAnalysis, counts: dict[str, TimelineCounts], origin: float, finish: float
) -> dict[str, str]:
    faults: list[Fault] = [f.fault for f in analysis.faults]
    plots: dict[str, str] = {}
    rto_rpo_plot(run_dir / RTO_PLOT_NAME, analysis)
    plots["RTO per tenant per fault"] = RTO_PLOT_NAME
    empty = next(iter(counts.values()), None)
    for tenant in analysis.tenants:
        name = timeline_name(tenant)
        mine = counts.get(tenant) or _no_counts(empty, origin, finish)
        timeline_plot(
            run_dir / name,
            tenant,
            (),
            faults,
            _tenant_results(analysis, tenant),
            analysis.objective,
            started_at=origin,
            ended_at=finish,
            counts=mine,
        )
        plots[f"Timeline of tenant {tenant}"] = name
    return plots


def _no_counts(like: TimelineCounts | None, origin: float, finish: float) -> TimelineCounts:
    """Zero counts on the timeline's bins, for a tenant that journaled nothing."""
    edges = like.edges if like is not None else timeline_edges(finish - origin)[0]
    zeros = np.zeros(len(edges) - 1)
    return TimelineCounts(edges=edges, acks=zeros, fails=zeros, infos=zeros)


def build(run_dir: Path, *, objective: Objective | None = None, stability: float | None = None) -> Path:
    """Analyse the run in ``run_dir`` and write every report file; returns ``report.md``'s path.

    ``objective`` and ``stability`` override what ``run.json`` says. Raises ReportError
    for a missing run folder, ``run.json`` or journal (ProbeError/LoadgenError for a
    fault log, read-back or journal that cannot be read).
    """
    run_dir = Path(run_dir)
    meta = read_run_meta(run_dir)
    journal = run_dir / JOURNAL_DIR
    if not journal.is_dir() or not journal_segments(journal):
        raise ReportError(
            f"{journal} holds no journal (*.jsonl or *.parquet); run the load with its journal in this "
            "run folder, or pass the right run folder"
        )
    check_run_ids(run_dir, meta.run_id)
    faults = read_faults(run_dir / FAULT_LOG_NAME)
    readbacks = load_readback(run_dir / READBACK_NAME)
    context = meta.context
    try:
        # One analysis path for every run, a minute's or a day's: the journal through DuckDB,
        # never held as Python objects (probes.columnar, held equal to probes.analysis).
        with ColumnarJournal(journal) as columns:
            analysis = columns.analyze(
                meta.run_id,
                faults,
                readbacks,
                meta.tenants,
                objective=objective or meta.objective,
                stability=meta.stability_seconds if stability is None else stability,
                context=context,
            )
            analysis = _widen(analysis, meta)
            outages = outage_windows(analysis)
            rate = context.write_rate
            latency = columns.latency(
                outages, tenants=analysis.tenants, expected_interval=1.0 / rate if rate else None
            )
            efficiency = columns.efficiency(len(analysis.tenants), rate, context.load, outages).as_dict()
            origin = analysis.started_at if analysis.started_at is not None else 0.0
            finish = analysis.ended_at if analysis.ended_at is not None else origin + 1.0
            edges, _width = timeline_edges(finish - origin)
            counts = columns.timeline_counts(origin, edges)
    except (OSError, TypeError, UnicodeDecodeError, LoadgenError, ProbeError) as exc:
        raise ReportError(
            f"{journal} cannot be read ({exc}); remove or fix the broken journal file"
        ) from None
    extra = {"target": meta.target, **meta.passthrough, **read_backup_blocks(run_dir)}
    try:
        soak = summarize_soak(run_dir)
    except ProbeError as exc:
        raise ReportError(str(exc)) from None
    if soak is not None:
        extra["soak"] = soak
        analysis = _judge_soak(analysis, soak)
    observed = {o["name"]: o["value"] for o in read_observations(run_dir) if o.get("name") != "canary_set"}
    if observed:
        extra["control_plane"] = observed

    write_summary(run_dir / SUMMARY_NAME, analysis, extra, latency=latency, efficiency=efficiency)
    plots = _plots(run_dir, analysis, counts, origin, finish)
    soak_pngs = soak_plots(run_dir, soak) if soak is not None else {}
    write_metrics(run_dir / METRICS_NAME, analysis, latency=latency, efficiency=efficiency, soak=soak)
    report = run_dir / REPORT_NAME
    text = render_report(
        analysis,
        plots,
        extra if meta.target is not None else {},
        latency=latency,
        efficiency=efficiency,
        soak=soak,
        soak_plots=soak_pngs,
    )
    replace_text(report, text)
    write_html(report)
    return report
