"""RTO per tenant per fault across several runs, in one plot (matplotlib, Agg).

``combined_rto_plot(path, summaries)`` takes the ``summary.json`` documents of the runs
(see ``reports.summary``) and draws one column per (run, fault), one point per tenant,
against the RTO objective line (the checklist's 60 s unless told otherwise).

- **Columns** are labelled by fault kind ("pod-eviction"; a kind seen again is
  "pod-eviction #2"), short enough not to collide; ``plot_columns`` gives each label's
  run, and the go/no-go document's runs table lists the labels beside the run ids.
  Labels are turned (45°, then 90°) only when they would overlap.
- **The y axis is logarithmic**, from a decade below the fastest recovery (at least
  1 ms) to above the objective, so 0.4 s and 11 s sit clearly apart. An RTO under 1 ms is
  drawn at the floor as a downward triangle.
- A point is filled when the fault affected the tenant and hollow when it did not. A
  tenant that never recovered has no RTO: it is a red cross on a shaded band above the
  objective and every measured value, labelled "no RTO" on the axis, so it can never be
  mistaken for a fast recovery. The worst RTO of each column is written above it.

It is a strip plot rather than bars so that many tenants per fault stay legible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation
from matplotlib.ticker import NullFormatter

from reports.errors import ReportError

__all__ = [
    "DEFAULT_OBJECTIVE_SECONDS",
    "NO_RTO_LABEL",
    "Column",
    "column_labels",
    "combined_rto_plot",
    "plot_columns",
    "rto_figure",
]

DEFAULT_OBJECTIVE_SECONDS = 60.0
NO_RTO_LABEL = "no RTO"
_OBJECTIVE_COLOR = "#6a1b9a"
_FAIL_COLOR = "#c62828"
_DPI = 110
_MAX_TENANT_COLORS = 10
_FLOOR_SECONDS = 0.001  # RTOs under a millisecond are drawn at the floor
_BAND_ABOVE = 2.5  # the never-recovered band sits this factor above the largest value or the objective


@dataclass(frozen=True)
class Column:
    """One column of the plot: a fault of a run, and its tenants' results."""

    label: str
    run_index: int
    run_id: str
    fault: str
    results: list[Mapping[str, Any]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def plot_columns(summaries: Sequence[Mapping[str, Any]]) -> list[Column]:
    """One column per fault of every run, in order, labelled by fault kind (``kind #2`` when repeated)."""
    out: list[Column] = []
    seen: dict[str, int] = {}
    for index, summary in enumerate(summaries):
        run_id = str(summary.get("run_id") or f"run {index + 1}")
        for fault in summary.get("faults") or []:
            if not isinstance(fault, Mapping):
                continue
            kind = str(fault.get("kind") or fault.get("name") or "fault")
            seen[kind] = seen.get(kind, 0) + 1
            label = kind if seen[kind] == 1 else f"{kind} #{seen[kind]}"
            results = [r for r in fault.get("results") or [] if isinstance(r, Mapping)]
            out.append(Column(label, index, run_id, str(fault.get("name") or kind), results))
    return out


def column_labels(summaries: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Per summary, the labels of its columns in the plot (empty for a run without faults)."""
    labels: list[list[str]] = [[] for _ in summaries]
    for column in plot_columns(summaries):
        labels[column.run_index].append(column.label)
    return labels


def _fmt(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s" if abs(value) < 10 else f"{value:.1f} s"


def _seconds_label(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 0.01 else f"{value:g} s"


def _y_ticks(
    floor: float, peak: float, objective: float, band: float | None
) -> tuple[list[float], list[str]]:
    """Decades from the floor up to the peak, the objective, and the never-recovered band."""
    ticks: list[float] = []
    exponent = round(math.log10(floor))
    while 10.0**exponent <= peak * 1.05:
        value = 10.0**exponent
        if abs(math.log10(value / objective)) >= 0.3:  # keep clear of the objective's own tick
            ticks.append(value)
        exponent += 1
    ticks.append(objective)
    ticks.sort()
    labels = [_seconds_label(t) for t in ticks]
    if band is not None:
        ticks.append(band)
        labels.append(NO_RTO_LABEL)
    return ticks, labels


def _overlapping(boxes: Sequence[Any]) -> bool:
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _fit_x_labels(figure: Figure, axes: Axes) -> None:
    """Turn the column labels 45°, then 90°, only when they would overlap."""
    for rotation in (45, 90):
        renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
        figure.draw(renderer)
        boxes = [t.get_window_extent(renderer) for t in axes.get_xticklabels() if t.get_text()]
        if not _overlapping(boxes):
            return
        for text in axes.get_xticklabels():
            text.set_rotation(rotation)
            text.set_horizontalalignment("right" if rotation == 45 else "center")
            text.set_rotation_mode("anchor" if rotation == 45 else "default")


def _fit_notes(figure: Figure, axes: Axes, notes: Sequence[Annotation]) -> None:
    """Keep column notes apart and inside the plot: shorten, then alternate heights, then drop.

    Shortened, "worst 8.00 s" reads "8.00 s" and "not recovered: 2" reads "2" (the red
    cross and its legend say what it counts). A note that still collides is not drawn:
    the runs table gives every run's worst RTO.
    """
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]

    def boxes() -> list[Any]:
        figure.draw(renderer)
        return [n.get_window_extent(renderer) for n in notes]

    def fits(found: list[Any]) -> bool:
        inside = axes.get_window_extent(renderer)
        return not _overlapping(found) and all(inside.x0 <= b.x0 and b.x1 <= inside.x1 for b in found)

    if fits(boxes()):
        return
    for note in notes:
        note.set_text(note.get_text().removeprefix("worst ").removeprefix("not recovered: "))
    if fits(boxes()):
        return
    for index, note in enumerate(notes):
        if index % 2:
            note.xyann = (0, 21)
    kept: list[Any] = []
    for note, box in zip(notes, boxes(), strict=True):
        if fits([*kept, box]):
            kept.append(box)
        else:
            note.set_visible(False)


def _draw_column(
    axes: Axes, x: int, column: Column, colors: dict[str, str], scale: tuple[float, float, float]
) -> Annotation | None:
    """The column's points, and its note above them (the worst RTO, or how many never recovered)."""
    floor, band, objective = scale
    count = max(1, len(column.results))
    worst: float | None = None
    not_recovered = 0
    for slot, result in enumerate(column.results):
        offset = 0.0 if count == 1 else -0.3 + 0.6 * slot / (count - 1)
        color = colors.get(str(result.get("tenant")), "C0")
        rto = _number(result.get("rto_seconds"))
        if not result.get("recovered"):
            not_recovered += 1
            axes.plot(x + offset, band, marker="X", markersize=11, color=_FAIL_COLOR, linestyle="none")
            continue
        if rto is None:
            axes.text(x + offset, floor, "?", ha="center", va="bottom", color="grey", fontsize=10)
            continue
        if worst is None or rto > worst:
            worst = rto
        over = rto > objective
        axes.plot(
            x + offset,
            max(rto, _FLOOR_SECONDS),
            marker="o" if rto >= _FLOOR_SECONDS else "v",
            markersize=8,
            linestyle="none",
            markerfacecolor=color if result.get("affected") else "white",
            markeredgecolor=_FAIL_COLOR if over else color,
            markeredgewidth=2.0 if over else 1.2,
        )
    if not_recovered:
        note, where, red = f"not recovered: {not_recovered}", band, True
    elif worst is not None:
        note, where, red = f"worst {_fmt(worst)}", max(worst, _FLOOR_SECONDS), worst > objective
    else:
        return None
    return axes.annotate(
        note,
        xy=(float(x), where),
        xytext=(0, 9),
        textcoords="offset points",
        ha="center",
        fontsize=8.5,
        color=_FAIL_COLOR if red else "black",
        fontweight="bold" if not_recovered else "normal",
    )


def rto_figure(
    summaries: Sequence[Mapping[str, Any]], *, objective: float = DEFAULT_OBJECTIVE_SECONDS
) -> Figure:
    """The combined RTO figure of ``summaries`` (summary.json documents), drawn and laid out."""
    if not objective > 0 or not math.isfinite(objective):
        raise ReportError(f"RTO objective {objective!r} must be a positive number of seconds; pass one")
    columns = plot_columns(summaries)
    tenants = list(dict.fromkeys(str(r.get("tenant")) for c in columns for r in c.results if r.get("tenant")))
    colored = len(tenants) <= _MAX_TENANT_COLORS
    colors = {t: (f"C{i}" if colored else "C0") for i, t in enumerate(tenants)}
    measured = [
        v
        for c in columns
        for r in c.results
        if r.get("recovered") and (v := _number(r.get("rto_seconds"))) is not None
    ]
    lowest = min([max(v, _FLOOR_SECONDS) for v in measured] or [1.0])  # under 1 ms: at the floor
    floor = min(0.1, 10.0 ** math.floor(math.log10(lowest)))
    peak = max([objective, *measured])
    lost = any(not r.get("recovered") for c in columns for r in c.results)
    band = peak * _BAND_ABOVE

    figure = Figure(
        figsize=(min(12.0, max(10.0, 4.0 + 0.5 * len(columns))), 5.6), dpi=_DPI, layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.set_yscale("log")
    drawn = [
        _draw_column(axes, x, column, colors, (floor, band, objective)) for x, column in enumerate(columns)
    ]
    notes = [n for n in drawn if n is not None]
    if lost:
        axes.axhspan(band / 1.6, band * 1.6, color=_FAIL_COLOR, alpha=0.07, linewidth=0)
    axes.axhline(objective, color=_OBJECTIVE_COLOR, linestyle="--", linewidth=1.5)

    handles = [
        Line2D([], [], color=_OBJECTIVE_COLOR, linestyle="--", linewidth=1.5),
        Line2D([], [], marker="o", linestyle="none", color="grey", markersize=8),
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="white", color="grey", markersize=8),
    ]
    labels = [f"RTO objective ({objective:g} s)", "affected tenant", "unaffected tenant"]
    if lost:
        handles.append(Line2D([], [], marker="X", linestyle="none", color=_FAIL_COLOR, markersize=10))
        labels.append(f"never recovered ({NO_RTO_LABEL})")
    if any(v < _FLOOR_SECONDS for v in measured):
        handles.append(Line2D([], [], marker="v", linestyle="none", color="grey", markersize=8))
        labels.append(f"under {_seconds_label(_FLOOR_SECONDS)}")
    if colored:
        handles += [Line2D([], [], marker="o", linestyle="none", color=colors[t]) for t in tenants]
        labels += [f"tenant {t}" for t in tenants]
    axes.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8.5
    )

    ticks, tick_labels = _y_ticks(floor, peak, objective, band if lost else None)
    axes.set_yticks(ticks, tick_labels, fontsize=8.5)
    axes.yaxis.set_minor_formatter(NullFormatter())
    if lost:
        axes.get_yticklabels()[-1].set_color(_FAIL_COLOR)
    axes.set_ylim(floor * 0.6, (band if lost else peak) * 3.0)
    if columns:
        axes.set_xticks(range(len(columns)), [c.label for c in columns], fontsize=8.5)
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
    axes.set_xlabel("fault (the runs table names the run of each column)")
    axes.set_ylabel("RTO (client-observed, log scale)")
    runs = len(summaries)
    axes.set_title(f"RTO per tenant per fault across {runs} run{'s' if runs != 1 else ''}")
    axes.grid(True, axis="y", which="major", alpha=0.3)
    _fit_x_labels(figure, axes)
    _fit_notes(figure, axes, notes)
    return figure


def combined_rto_plot(
    path: str | Path,
    summaries: Sequence[Mapping[str, Any]],
    *,
    objective: float = DEFAULT_OBJECTIVE_SECONDS,
) -> Path:
    """Write the combined RTO plot of ``summaries`` (summary.json documents) to ``path``; returns it."""
    figure = rto_figure(summaries, objective=objective)
    target = Path(path)
    try:
        figure.savefig(target, format="png", dpi=_DPI)
    except OSError as exc:
        raise ReportError(f"cannot write plot {target}: {exc.strerror or exc}; check the folder") from exc
    return target
