"""Drawing helpers shared by the capacity sweep's plots (``reports.capacity_plots``).

A ``Series`` is one write rate's steps grouped by tenant count, with its colour, marker,
line style and a small x offset so several rates stay apart. ``worst_line`` follows the
worst trial of each count and leaves a gap (NaN) where a value is unknown; ``crosses``
draws unknown per-tenant values as red crosses in the band at the top of the plot.
``finish`` marks the largest passing count, the first failing count and the knee of
every rate as vertical lines, labels the tenant axis and writes the PNG. Figures are
built without pyplot, so nothing global is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.capacity_data import (
    boundary,
    by_tenants,
    fmt_rate,
    knee,
    settings_of,
    steps_at,
    steps_of,
    worst,
    write_rates,
)
from reports.errors import ReportError
from reports.jsonfile import number

__all__ = [
    "LIMIT_COLOR",
    "MIB",
    "NODE_KEYS",
    "Series",
    "crosses",
    "empty_plot",
    "finish",
    "known_values",
    "legend",
    "mark_boundaries",
    "new_figure",
    "per_tenant",
    "plot_title",
    "save",
    "say",
    "series_of",
    "tenant_axis",
    "tenant_points",
    "worst_line",
]

_DPI = 110
_PASSING_COLOR = "#2a7f3f"
_FAIL_COLOR = "#c62828"
_KNEE_COLOR = "#ef8f00"
LIMIT_COLOR = "#6a1b9a"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_STYLES = ("--", "-.", ":", (0, (5, 1, 1, 1)))
_XLABEL = "tenants N (instances under load in parallel)"
_NAN = float("nan")
MIB = 1024.0 * 1024.0
NODE_KEYS = ("cpu_cores_mean", "cpu_cores_max", "memory_bytes_max")

Steps = list[dict[str, Any]]


@dataclass(frozen=True)
class Series:
    """One write rate: its steps by tenant count and how it is drawn."""

    rate: float
    suffix: str
    color: str
    marker: str
    style: Any
    offset: float
    groups: dict[int, Steps]

    def x(self, tenants: int) -> float:
        return tenants + self.offset


def series_of(doc: Mapping[str, Any]) -> list[Series]:
    """One series per write rate of the sweep (colour, marker, line style and x offset per rate)."""
    rates = write_rates(doc)
    many = len(rates) > 1
    out = []
    for i, rate in enumerate(rates):
        out.append(
            Series(
                rate,
                f" ({fmt_rate(rate)} writes/s)" if many else "",
                f"C{i % 10}",
                _MARKERS[i % len(_MARKERS)],
                _STYLES[i % len(_STYLES)],
                (i - (len(rates) - 1) / 2) * 0.15 if many else 0.0,
                by_tenants(steps_at(steps_of(doc), rate)),
            )
        )
    return out


def new_figure(rows: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure of ``rows`` axes sharing the tenant axis, attached to an Agg canvas."""
    figure = Figure(figsize=(11.5, 5.6 if rows == 1 else 8.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)
    return figure, [a for row in axes for a in row]


def save(figure: Figure, path: Path) -> Path:
    """Write the PNG; ReportError (one line) when the folder cannot take it."""
    try:
        figure.savefig(path, format="png", dpi=_DPI)
    except OSError as exc:
        raise ReportError(f"cannot write plot {path}: {exc.strerror or exc}; check the sweep folder") from exc
    return path


def say(axes: Axes, text: str) -> None:
    """A grey sentence in the middle of the axes, for what cannot be drawn."""
    axes.text(
        0.5,
        0.5,
        text,
        transform=axes.transAxes,
        ha="center",
        va="center",
        fontsize=12,
        color="grey",
        wrap=True,
    )


def plot_title(doc: Mapping[str, Any], what: str) -> str:
    """ "Capacity sweep <id>: <what> (<fault> at every step)"."""
    fault = settings_of(doc).get("fault") or "an unrecorded fault"
    return f"Capacity sweep {doc.get('sweep_id') or '?'}: {what} ({fault} at every step)"


def mark_boundaries(axes: list[Axes], doc: Mapping[str, Any], series: list[Series]) -> list[int]:
    """Largest passing, first failing and knee of every rate, as vertical lines on every axes."""
    drawn: list[int] = []
    for s in series:
        found = boundary(doc, s.rate)
        bend = knee(steps_of(doc), s.rate)
        for value, color, name in (
            (found.largest_passing, _PASSING_COLOR, "largest passing"),
            (found.first_failing, _FAIL_COLOR, "first failing"),
            (bend, _KNEE_COLOR, "knee"),
        ):
            if value is None:
                continue
            drawn.append(value)
            for index, ax in enumerate(axes):
                label = f"{name}: N = {value}{s.suffix}" if index == 0 else None
                ax.axvline(value, color=color, linestyle=s.style, linewidth=1.6, alpha=0.9, label=label)
    return drawn


def tenant_axis(axes: list[Axes], series: list[Series], marks: Sequence[int] = ()) -> None:
    """Integer ticks over the tenant counts that ran (and the marks), a grid and the x label."""
    counts = [n for s in series for n in s.groups] + list(marks)
    if counts:
        pad = max(1.0, 0.05 * (max(counts) - min(counts)))
        axes[0].set_xlim(min(counts) - pad, max(counts) + pad)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(_XLABEL)


def legend(ax: Axes) -> None:
    """The legend outside the axes, on the right, when anything is labelled."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8.5)


def crosses(ax: Axes, xs: list[float], y: float, label: str | None) -> None:
    """Red crosses at height ``y`` (the top band) for values that are unknown, with a count when stacked."""
    if not xs:
        return
    ax.scatter(xs, [y] * len(xs), marker="x", color=_FAIL_COLOR, s=48, linewidths=1.8, zorder=5, label=label)
    for x in sorted(set(xs)):
        count = xs.count(x)
        if count > 1:
            ax.annotate(
                f"{count}", (x, y), xytext=(5, 3), textcoords="offset points", fontsize=8, color=_FAIL_COLOR
            )


def worst_line(
    s: Series, pick: Callable[[dict[str, Any]], float | None], *, high_is_bad: bool = True
) -> list[float]:
    """The worst trial's value per tenant count; NaN (a gap) where it is unknown."""
    out = []
    for trials in s.groups.values():
        value = worst([pick(step) for step in trials], high_is_bad=high_is_bad)
        out.append(_NAN if value is None else value)
    return out


def per_tenant(step: dict[str, Any], key: str, sub: str | None = None) -> list[float | None]:
    """The per-tenant values of ``step[key]`` (or ``step[key][sub]``); None for each unknown one."""
    block = step.get(key)
    if sub is not None:
        block = block.get(sub) if isinstance(block, dict) else None
    return [number(v) for v in block.values()] if isinstance(block, dict) else []


def tenant_points(
    ax: Axes, series: list[Series], key: str, sub: str | None, what: str, top: float, missing: str
) -> None:
    """Every tenant's value per step as a small point; unknown ones as red crosses at ``top``."""
    first_miss = True
    for s in series:
        xs, ys, miss = [], [], []
        for tenants, trials in s.groups.items():
            for step in trials:
                for value in per_tenant(step, key, sub):
                    if value is None:
                        miss.append(s.x(tenants))
                    else:
                        xs.append(s.x(tenants))
                        ys.append(value)
        if xs:
            ax.scatter(xs, ys, s=10, alpha=0.45, color=s.color, marker=s.marker, label=f"{what}{s.suffix}")
        crosses(ax, miss, top, missing if first_miss and miss else None)
        first_miss = first_miss and not miss


def known_values(series: list[Series], pick: Callable[[dict[str, Any]], list[float | None]]) -> list[float]:
    """Every known value ``pick`` returns over every step of every series."""
    return [
        v for s in series for trials in s.groups.values() for st in trials for v in pick(st) if v is not None
    ]


def finish(
    figure: Figure, axes: list[Axes], doc: Mapping[str, Any], series: list[Series], path: Path
) -> Path:
    """Mark the boundaries and the knee, label the tenant axis, add the legend, write the PNG."""
    tenant_axis(axes, series, mark_boundaries(axes, doc, series))
    legend(axes[0])
    return save(figure, path)


def empty_plot(doc: Mapping[str, Any], caption: str, path: Path) -> Path:
    """A figure that says the sweep has no step, in place of empty axes."""
    figure, (ax,) = new_figure()
    say(ax, "no step recorded: the sweep has no result")
    ax.set_axis_off()
    ax.set_title(plot_title(doc, caption))
    return save(figure, path)
