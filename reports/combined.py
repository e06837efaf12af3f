"""RTO per tenant per fault across several runs, in one plot (matplotlib, Agg).

``combined_rto_plot(path, summaries)`` takes the ``summary.json`` documents of the runs
(see ``reports.summary``) and draws one column per (run, fault), one point per tenant,
against the RTO objective line (the checklist's 60 s unless told otherwise). A point is
filled when the fault affected the tenant and hollow when it did not; a tenant that never
recovered has no RTO and is drawn as a red cross in a band above every measured value,
so it can never be mistaken for a fast recovery. The worst RTO of each column is written
above it. It is a strip plot rather than bars so that many tenants per fault stay legible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports.errors import ReportError

__all__ = ["DEFAULT_OBJECTIVE_SECONDS", "combined_rto_plot"]

DEFAULT_OBJECTIVE_SECONDS = 60.0
_OBJECTIVE_COLOR = "#6a1b9a"
_FAIL_COLOR = "#c62828"
_DPI = 110
_MAX_TENANT_COLORS = 10


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _columns(summaries: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """(label, tenant results) per fault of every run, in order."""
    out: list[tuple[str, list[Mapping[str, Any]]]] = []
    for index, summary in enumerate(summaries, start=1):
        run_id = str(summary.get("run_id") or f"run {index}")
        for fault in summary.get("faults") or []:
            if not isinstance(fault, Mapping):
                continue
            results = [r for r in fault.get("results") or [] if isinstance(r, Mapping)]
            label = f"{run_id}\n{fault.get('name', '?')}\n({fault.get('kind', '?')})"
            out.append((label, results))
    return out


def _fmt(value: float) -> str:
    return f"{value:.2f} s" if abs(value) < 10 else f"{value:.1f} s"


def combined_rto_plot(
    path: str | Path,
    summaries: Sequence[Mapping[str, Any]],
    *,
    objective: float = DEFAULT_OBJECTIVE_SECONDS,
) -> Path:
    """Write the combined RTO plot of ``summaries`` (summary.json documents) to ``path``; returns it."""
    columns = _columns(summaries)
    tenants = list(
        dict.fromkeys(str(r.get("tenant")) for _, results in columns for r in results if r.get("tenant"))
    )
    colored = len(tenants) <= _MAX_TENANT_COLORS
    colors = {t: (f"C{i}" if colored else "C0") for i, t in enumerate(tenants)}
    measured = [
        v
        for _, results in columns
        for r in results
        if r.get("recovered") and (v := _number(r.get("rto_seconds"))) is not None
    ]
    peak = max([objective, *measured, 1.0])
    band = peak * 1.15
    ylim = peak * 1.35

    figure = Figure(
        figsize=(min(22.0, max(9.0, 3.5 + 1.2 * len(columns))), 6.0), dpi=_DPI, layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    any_lost = False
    for x, (_, results) in enumerate(columns):
        count = max(1, len(results))
        worst: float | None = None
        worst_x = float(x)
        not_recovered = 0
        for slot, result in enumerate(results):
            offset = 0.0 if count == 1 else -0.3 + 0.6 * slot / (count - 1)
            tenant = str(result.get("tenant"))
            color = colors.get(tenant, "C0")
            rto = _number(result.get("rto_seconds"))
            if not result.get("recovered"):
                not_recovered += 1
                any_lost = True
                axes.plot(x + offset, band, marker="X", markersize=11, color=_FAIL_COLOR, linestyle="none")
                continue
            if rto is None:
                axes.text(x + offset, ylim * 0.02, "?", ha="center", va="bottom", color="grey", fontsize=10)
                continue
            if worst is None or rto > worst:
                worst, worst_x = rto, x + offset
            axes.plot(
                x + offset,
                rto,
                marker="o",
                markersize=8,
                linestyle="none",
                markerfacecolor=color if result.get("affected") else "white",
                markeredgecolor=_FAIL_COLOR if rto > objective else color,
                markeredgewidth=2.0 if rto > objective else 1.2,
            )
        if not_recovered:
            axes.annotate(
                f"not recovered: {not_recovered}",
                xy=(x, band),
                xytext=(0, 9),
                textcoords="offset points",
                ha="center",
                fontsize=8.5,
                color=_FAIL_COLOR,
                fontweight="bold",
            )
        elif worst is not None:
            axes.annotate(
                f"worst {_fmt(worst)}",
                xy=(worst_x, worst),
                xytext=(0, 9),
                textcoords="offset points",
                ha="center",
                fontsize=8.5,
                color=_FAIL_COLOR if worst > objective else "black",
            )

    axes.axhline(objective, color=_OBJECTIVE_COLOR, linestyle="--", linewidth=1.5)
    handles = [
        Line2D([], [], color=_OBJECTIVE_COLOR, linestyle="--", linewidth=1.5),
        Line2D([], [], marker="o", linestyle="none", color="grey", markersize=8),
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="white", color="grey", markersize=8),
    ]
    labels = [f"RTO objective ({objective:g} s)", "affected tenant", "unaffected tenant"]
    if any_lost:
        handles.append(Line2D([], [], marker="X", linestyle="none", color=_FAIL_COLOR, markersize=10))
        labels.append("not recovered (no RTO)")
    if colored:
        handles += [Line2D([], [], marker="o", linestyle="none", color=colors[t]) for t in tenants]
        labels += [f"tenant {t}" for t in tenants]
    axes.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8.5
    )
    if columns:
        axes.set_xticks(
            range(len(columns)),
            [label for label, _ in columns],
            fontsize=8,
            rotation=30 if len(columns) > 6 else 0,
            ha="right" if len(columns) > 6 else "center",
        )
        axes.set_xlim(-0.6, len(columns) - 0.4)
    else:
        axes.set_xticks([])
        axes.text(
            0.5,
            0.5,
            "no faults injected in these runs",
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=12,
            color="grey",
        )
    axes.set_ylim(-0.03 * ylim, ylim)
    axes.set_xlabel("run / fault")
    axes.set_ylabel("RTO (seconds, client-observed)")
    runs = len(summaries)
    axes.set_title(f"RTO per tenant per fault across {runs} run{'s' if runs != 1 else ''}")
    axes.grid(True, axis="y", alpha=0.3)
    target = Path(path)
    try:
        figure.savefig(target, format="png", dpi=_DPI)
    except OSError as exc:
        raise ReportError(f"cannot write plot {target}: {exc.strerror or exc}; check the folder") from exc
    return target
