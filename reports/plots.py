"""The run's plots (matplotlib, Agg, no display needed).

``timeline_plot`` draws one tenant's write outcomes per second around the faults:
acknowledged writes on top, failed and unknown-outcome writes below, a marker per fault,
the outage shaded from the fault to recovery (hatched to the end of the plot when the
tenant never recovered) and a dashed line where the RTO objective runs out.
``rto_rpo_plot`` draws RTO per tenant per fault against the objective, with lost
acknowledged writes written on each bar.

The x axis is seconds since the run started. Figures are built without pyplot, so
nothing global is touched and nothing is kept open after the file is written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from loadgen.journal import Write
from probes.columnar import TimelineCounts
from probes.model import Fault, Objective, RunAnalysis, TenantResult
from reports.errors import ReportError
from reports.times import utc_iso

__all__ = ["choose_bin_seconds", "rto_rpo_plot", "timeline_plot"]

_ACK_COLOR = "#2a7f3f"
_FAIL_COLOR = "#c62828"
_UNKNOWN_COLOR = "#ef8f00"
_FAULT_COLOR = "#37474f"
_OUTAGE_COLOR = "#e57373"
_OBJECTIVE_COLOR = "#6a1b9a"
_DPI = 110


def choose_bin_seconds(span: float) -> float:
    """0.5 s bins for runs up to 2 min, 1 s up to 2 h, then whole seconds keeping ~7,200 bins."""
    if span <= 120:
        return 0.5
    if span <= 7200:
        return 1.0
    return float(math.ceil(span / 7200))


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    target = Path(path)
    try:
        figure.savefig(target, format="png", dpi=_DPI)
    except OSError as exc:
        raise ReportError(f"cannot write plot {target}: {exc.strerror or exc}; check the folder") from exc
    return target


def _fmt_seconds(value: float | None) -> str:
    """Seconds for a label: two decimals below 10 s (lab recoveries take about one), else one."""
    if value is None:
        return "?"
    return f"{value:.2f} s" if abs(value) < 10 else f"{value:.1f} s"


def _outage_label(fault: Fault, result: TenantResult) -> str:
    if not result.recovered:
        return f"{fault.name}: not recovered"
    return f"{fault.name}: outage, RTO {_fmt_seconds(result.rto_seconds)}"


def _bins(times: np.ndarray, edges: np.ndarray, width: float) -> np.ndarray:
    counts, _ = np.histogram(times, bins=edges)
    return counts / width


def timeline_edges(span: float, bin_seconds: float | None = None) -> tuple[np.ndarray, float]:
    """The bin edges (seconds from the start) of a timeline ``span`` seconds long, and their width."""
    span = max(span, 1.0)
    width = bin_seconds if bin_seconds and bin_seconds > 0 else choose_bin_seconds(span)
    edges = np.arange(0.0, span + width, width)
    if len(edges) < 2:
        edges = np.array([0.0, width])
    return edges, width


def timeline_plot(
    path: str | Path,
    tenant: str,
    writes: Iterable[Write],
    faults: Sequence[Fault],
    results: Sequence[TenantResult | None],
    objective: Objective,
    *,
    started_at: float | None = None,
    ended_at: float | None = None,
    bin_seconds: float | None = None,
    counts: TimelineCounts | None = None,
) -> Path:
    """Write one tenant's timeline PNG to ``path``; returns the path.

    ``results[i]`` is this tenant's result for ``faults[i]`` (None when there is none).
    Writes of other tenants are ignored, so the whole journal can be passed. The x axis
    starts at ``started_at`` (default: the first write or fault) and ends at ``ended_at``
    (default: the last write, fault end or recovery). Each write counts at its end time.
    ``counts`` (a day's journal is not held as writes: :meth:`probes.columnar.ColumnarJournal
    .timeline_counts` over :func:`timeline_edges` from ``started_at``) replaces ``writes``.
    """
    if len(results) != len(faults):
        raise ReportError(
            f"timeline of {tenant}: {len(faults)} faults but {len(results)} results; "
            "pass one result per fault"
        )
    mine = [] if counts is not None else [w for w in writes if w.tenant == tenant]
    if counts is not None and (started_at is None or ended_at is None):
        raise ReportError(f"timeline of {tenant}: counts need started_at and ended_at; pass both")
    instants = [w.start for w in mine] + [f.injected_at for f in faults]
    ends = [w.end for w in mine] + [f.injected_at for f in faults]
    ends += [f.ended_at for f in faults if f.ended_at is not None]
    ends += [r.recovered_at for r in results if r is not None and r.recovered_at is not None]
    origin = started_at if started_at is not None else (min(instants) if instants else 0.0)
    finish = ended_at if ended_at is not None else (max(ends) if ends else origin + 1.0)
    span = max(finish - origin, 1.0)
    if counts is not None:
        edges = counts.edges
        width = float(edges[1] - edges[0])
    else:
        edges, width = timeline_edges(span, bin_seconds)

    figure = _new_figure(12.5, 6.2)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1.6])

    def rel(kind: Sequence[str]) -> np.ndarray:
        return np.array([w.end - origin for w in mine if w.outcome in kind], dtype=float)

    if counts is not None:
        acks, failed, unknown = (
            np.asarray(c, dtype=float) / width for c in (counts.acks, counts.fails, counts.infos)
        )
    else:
        acks = _bins(rel(("ok",)), edges, width)
        failed = _bins(rel(("fail",)), edges, width)
        unknown = _bins(rel(("info",)), edges, width)
    bin_text = f"{width:g} s bins"
    top.stairs(
        acks, edges, color=_ACK_COLOR, linewidth=1.4, fill=False, label=f"acknowledged writes/s ({bin_text})"
    )
    bottom.stairs(failed, edges, color=_FAIL_COLOR, fill=True, alpha=0.75, label="failed writes/s")
    bottom.stairs(
        failed + unknown,
        edges,
        baseline=failed,
        color=_UNKNOWN_COLOR,
        fill=True,
        alpha=0.75,
        label="unknown-outcome writes/s",
    )
    if (counts is None and not mine) or (
        counts is not None and not (acks.any() or failed.any() or unknown.any())
    ):
        top.text(
            0.5,
            0.5,
            "no writes recorded for this tenant",
            transform=top.transAxes,
            ha="center",
            va="center",
            fontsize=12,
            color="grey",
        )

    handles: list[Line2D | Patch] = []
    labels: list[str] = []
    objective_drawn = False
    for index, (fault, result) in enumerate(zip(faults, results, strict=True)):
        x = fault.injected_at - origin
        for axes in (top, bottom):
            axes.axvline(x, color=_FAULT_COLOR, linewidth=1.6)
        target = f" on {fault.target}" if fault.target else ""
        top.annotate(
            f"{fault.name}\n({fault.kind}{target})",
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -4 - 26 * (index % 3)),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=8.5,
            color=_FAULT_COLOR,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": _FAULT_COLOR, "alpha": 0.85},
        )
        deadline = x + objective.rto_seconds
        if deadline <= span:
            for axes in (top, bottom):
                axes.axvline(deadline, color=_OBJECTIVE_COLOR, linestyle="--", linewidth=1.2)
            if not objective_drawn:
                handles.append(Line2D([], [], color=_OBJECTIVE_COLOR, linestyle="--"))
                labels.append(f"fault + RTO objective ({objective.rto_seconds:g} s)")
                objective_drawn = True
        if result is None or not (result.affected or not result.recovered):
            continue
        if result.recovered:
            stop = result.recovered_at
            if stop is None and result.rto_seconds is not None:
                stop = fault.injected_at + result.rto_seconds
            if stop is None:
                continue
            for axes in (top, bottom):
                axes.axvspan(x, stop - origin, color=_OUTAGE_COLOR, alpha=0.25, linewidth=0)
            handles.append(Patch(facecolor=_OUTAGE_COLOR, alpha=0.25))
        else:
            for axes in (top, bottom):
                axes.axvspan(
                    x,
                    span,
                    facecolor=_OUTAGE_COLOR,
                    alpha=0.18,
                    hatch="//",
                    edgecolor=_FAIL_COLOR,
                    linewidth=0,
                )
            handles.append(Patch(facecolor=_OUTAGE_COLOR, alpha=0.18, hatch="//", edgecolor=_FAIL_COLOR))
        labels.append(_outage_label(fault, result))

    handles.insert(0, Line2D([], [], color=_FAULT_COLOR, linewidth=1.6))
    labels.insert(0, "fault injected")
    top_handles, top_labels = top.get_legend_handles_labels()
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8.5, "borderaxespad": 0.0}
    top.legend(top_handles + handles, top_labels + labels, **outside)
    bottom.legend(**outside)

    top.set_xlim(0.0, span)
    top.set_ylim(bottom=0.0, top=max(float(acks.max(initial=0.0)) * 1.35, 1.0))
    bottom.set_ylim(bottom=0.0, top=max(float((failed + unknown).max(initial=0.0)) * 1.25, 1.0))
    top.set_ylabel("acknowledged writes / s")
    bottom.set_ylabel("failed + unknown / s")
    start_text = utc_iso(origin) if instants or started_at is not None else "?"
    bottom.set_xlabel(f"seconds since run start (t = 0 at {start_text} UTC)")
    top.set_title(f"Tenant {tenant}: writes per second around the faults")
    for axes in (top, bottom):
        axes.grid(True, alpha=0.3)
    return _save(figure, path)


def _tenant_order(analysis: RunAnalysis) -> list[str]:
    order = list(analysis.tenants)
    for fault_result in analysis.faults:
        for result in fault_result.results:
            if result.tenant not in order:
                order.append(result.tenant)
    return order


def rto_rpo_plot(path: str | Path, analysis: RunAnalysis) -> Path:
    """Write the RTO-per-tenant-per-fault bar chart to ``path``; returns the path.

    One group of bars per fault, one bar per tenant. A tenant that never recovered
    gets a hatched bar reaching above the objective, labelled "not recovered"; one
    whose RTO cannot be told gets no bar and the text "cannot tell". Above each bar:
    the RTO and the lost acknowledged writes ("lost ?" when the read-back failed).
    """
    objective = analysis.objective.rto_seconds
    tenants = _tenant_order(analysis)
    colors = {t: f"C{i % 10}" for i, t in enumerate(tenants)}
    bar_count = sum(len(f.results) for f in analysis.faults)
    figure = _new_figure(min(20.0, max(10.0, 6.0 + 0.55 * bar_count)), 5.8)
    axes: Axes = figure.subplots()

    measured = [
        r.rto_seconds for f in analysis.faults for r in f.results if r.rto_seconds is not None and r.recovered
    ]
    peak = max([objective, *measured, 1.0])
    not_recovered_height = peak * 1.2
    ylim = peak * 1.45
    slot = min(0.8 / max(1, len(tenants)), 0.3)
    half = slot * len(tenants) / 2
    text_size = 8.5 if bar_count <= 12 else 7.0
    annotate_all = bar_count <= 32

    any_not_recovered = False
    for group, fault_result in enumerate(analysis.faults):
        for result in fault_result.results:
            position = group - half + slot * (tenants.index(result.tenant) + 0.5)
            color = colors[result.tenant]
            lost = result.lost_acked_writes
            lost_text = "lost ?" if lost is None else f"lost {lost}"
            lost_bad = lost is None or lost > 0
            if not result.recovered:
                any_not_recovered = True
                axes.bar(
                    position,
                    not_recovered_height,
                    width=slot * 0.9,
                    facecolor="white",
                    edgecolor=color,
                    hatch="///",
                    linewidth=1.5,
                )
                axes.text(
                    position,
                    not_recovered_height / 2,
                    "not recovered",
                    rotation=90,
                    ha="center",
                    va="center",
                    fontsize=text_size,
                    color=_FAIL_COLOR,
                    fontweight="bold",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                )
                label, height = "no RTO", not_recovered_height
            elif result.rto_seconds is None:
                axes.text(
                    position,
                    ylim * 0.02,
                    "cannot tell",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=text_size,
                    color="grey",
                )
                label, height = "RTO ?", ylim * 0.2
            else:
                height = result.rto_seconds
                axes.bar(position, height, width=slot * 0.9, color=color, edgecolor="black", linewidth=0.5)
                label = _fmt_seconds(height) if result.affected else f"{_fmt_seconds(height)}\nunaffected"
            if annotate_all or lost_bad or not result.recovered:
                axes.annotate(
                    f"{label}\n{lost_text}",
                    xy=(position, height),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=text_size,
                    color=_FAIL_COLOR if lost_bad else "black",
                )

    axes.axhline(objective, color=_OBJECTIVE_COLOR, linestyle="--", linewidth=1.5)
    handles: list[Line2D | Patch] = [
        Patch(facecolor=colors[t], edgecolor="black", linewidth=0.5) for t in tenants
    ]
    labels = [f"tenant {t}" for t in tenants]
    handles.append(Line2D([], [], color=_OBJECTIVE_COLOR, linestyle="--", linewidth=1.5))
    labels.append(f"RTO objective ({objective:g} s)")
    if any_not_recovered:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///"))
        labels.append("not recovered (no RTO)")
    axes.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        fontsize=8.5,
        ncol=1 + len(tenants) // 16,
    )

    if analysis.faults:
        ticks = [
            f"{f.fault.name}\n({f.fault.kind}{' on ' + f.fault.target if f.fault.target else ''})"
            for f in analysis.faults
        ]
        axes.set_xticks(range(len(analysis.faults)), ticks, fontsize=9)
        axes.set_xlim(-0.6, len(analysis.faults) - 0.4)
    else:
        axes.set_xticks([])
        axes.text(
            0.5,
            0.5,
            "no faults injected in this run",
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=12,
            color="grey",
        )
    axes.set_ylim(0.0, ylim)
    axes.set_xlabel("fault (lost = acknowledged writes missing after recovery)")
    axes.set_ylabel("RTO (seconds, client-observed)")
    axes.set_title(f"RTO per tenant per fault, run {analysis.run_id}: {analysis.verdict}")
    axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)
