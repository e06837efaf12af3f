"""The capacity sweep's plots (matplotlib, Agg, no display needed), one PNG each in the sweep folder.

Every plot has the tenant count N on the x axis and marks, per write rate, the largest
passing count (green), the first failing count (red) and the knee (orange,
``reports.capacity_data.knee``) as vertical lines named in the legend. Several write
rates are several series (colour and marker per rate; line style per rate for the
vertical marks). Trials of one N are all drawn as points; lines follow the worst trial.
A value the sweep could not know is never drawn as 0: the line has a gap, and a tenant
without an RTO or a Ready time is a red cross at the top of the plot.

- ``capacity-rto.png``: RTO per tenant per step, the p95 and worst lines, the objective.
- ``capacity-latency.png``: p99 write latency and the limit.
- ``capacity-efficiency.png``: efficiency and the minimum.
- ``capacity-nodes.png``: server CPU (cores, mean and max) and memory (MiB, max) per node,
  or the reason they are unknown.
- ``capacity-control-plane.png``: seconds until each tenant's instance was Ready again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reports.capacity_axes import (
    LIMIT_COLOR,
    MIB,
    NODE_KEYS,
    Series,
    crosses,
    empty_plot,
    finish,
    known_values,
    legend,
    new_figure,
    per_tenant,
    plot_title,
    save,
    say,
    series_of,
    tenant_points,
    worst_line,
)
from reports.capacity_data import measure, settings_of, worst
from reports.jsonfile import number

__all__ = ["PLOT_FILES", "capacity_plots"]

PLOT_FILES: dict[str, str] = {
    "RTO per tenant by tenant count": "capacity-rto.png",
    "p99 write latency by tenant count": "capacity-latency.png",
    "Efficiency by tenant count": "capacity-efficiency.png",
    "Server CPU and memory per node": "capacity-nodes.png",
    "Control plane: instance Ready again": "capacity-control-plane.png",
}


def _rto(doc: Mapping[str, Any], series: list[Series], path: Path) -> Path:
    figure, (ax,) = new_figure()
    objective = number(settings_of(doc).get("objective_seconds"))
    known = known_values(
        series,
        lambda st: [
            *per_tenant(st, "rto", "per_tenant"),
            measure(st, "rto", "worst"),
            measure(st, "rto", "p95"),
        ],
    )
    peak = max([*known, objective or 0.0, 1.0])
    if not known:
        say(ax, "no RTO is known at any step")
    missing = "did not recover or cannot tell (no RTO)"
    tenant_points(ax, series, "rto", "per_tenant", "RTO per tenant", peak * 1.2, missing)
    for s in series:
        xs = [s.x(n) for n in s.groups]
        worst_rto = worst_line(s, lambda st: measure(st, "rto", "worst"))
        p95_line = worst_line(s, lambda st: measure(st, "rto", "p95"))
        ax.plot(xs, worst_rto, color=s.color, marker=s.marker, linewidth=1.8, label=f"worst RTO{s.suffix}")
        ax.plot(
            xs,
            p95_line,
            color=s.color,
            marker=s.marker,
            linestyle="--",
            linewidth=1.2,
            markerfacecolor="white",
            label=f"p95 RTO{s.suffix}",
        )
    if objective is not None:
        ax.axhline(
            objective,
            color=LIMIT_COLOR,
            linestyle="--",
            linewidth=1.5,
            label=f"RTO objective ({objective:g} s)",
        )
    ax.set_ylim(0.0, peak * 1.3)
    ax.set_ylabel("RTO (seconds from the fault, client-observed)")
    ax.set_title(plot_title(doc, "RTO per tenant by tenant count"))
    return finish(figure, [ax], doc, series, path)


def _single(
    doc: Mapping[str, Any],
    series: list[Series],
    path: Path,
    pick: Callable[[dict[str, Any]], float | None],
    *,
    what: str,
    ylabel: str,
    title: str,
    limit: tuple[float | None, str],
    high_is_bad: bool,
) -> Path:
    """One measure per step: points per trial, the worst trial's line, a limit line, unknowns on top."""
    figure, (ax,) = new_figure()
    known = known_values(series, lambda st: [pick(st)])
    if not known:
        say(ax, f"{what} is unknown at every step")
    level, limit_label = limit
    values = [*known, *([level] if level is not None else [])]
    if high_is_bad:
        low, high = 0.0, max([*values, 1.0]) * 1.3
    else:
        low = min([*values, 1.0]) - 0.05
        high = max([*values, 1.0]) + 0.08
    top = high - (high - low) * 0.06
    first_miss = True
    for s in series:
        xs = [s.x(n) for n, trials in s.groups.items() for st in trials if pick(st) is not None]
        ys = [v for trials in s.groups.values() for st in trials if (v := pick(st)) is not None]
        miss = [s.x(n) for n, trials in s.groups.items() for st in trials if pick(st) is None]
        ax.scatter(xs, ys, s=16, alpha=0.5, color=s.color, marker=s.marker)
        line = worst_line(s, pick, high_is_bad=high_is_bad)
        ax.plot(
            [s.x(n) for n in s.groups],
            line,
            color=s.color,
            marker=s.marker,
            linewidth=1.8,
            label=f"{what}{s.suffix}",
        )
        crosses(ax, miss, top, f"{what}: unknown" if first_miss and miss else None)
        first_miss = first_miss and not miss
    if level is not None:
        ax.axhline(level, color=LIMIT_COLOR, linestyle="--", linewidth=1.5, label=limit_label)
    ax.set_ylim(low, high)
    ax.set_ylabel(ylabel)
    ax.set_title(plot_title(doc, title))
    return finish(figure, [ax], doc, series, path)


def _nodes(doc: Mapping[str, Any], series: list[Series], path: Path) -> Path:
    names = list(
        dict.fromkeys(
            n for s in series for t in s.groups.values() for st in t for n in (st.get("nodes") or {})
        )
    )
    known = known_values(
        series,
        lambda st: [measure(st, "nodes", n, k) for n in (st.get("nodes") or {}) for k in NODE_KEYS],
    )
    reasons = list(
        dict.fromkeys(
            str(st["nodes_unavailable"])
            for s in series
            for t in s.groups.values()
            for st in t
            if st.get("nodes_unavailable")
        )
    )
    if not known:
        figure, (ax,) = new_figure()
        why = "; ".join(reasons) if reasons else "no step recorded them"
        say(ax, f"Server CPU and memory per node are unknown at every step:\n{why}")
        ax.set_axis_off()
        ax.set_title(plot_title(doc, "server CPU and memory per node"))
        return save(figure, path)
    figure, axes = new_figure(rows=2)
    cpu, memory = axes
    for i, name in enumerate(names):
        color = f"C{i % 10}"
        for s in series:
            xs = [s.x(n) for n in s.groups]

            def at(key: str, node: str = name) -> Callable[[dict[str, Any]], float | None]:
                return lambda st: measure(st, "nodes", node, key)

            cpu.plot(
                xs,
                worst_line(s, at("cpu_cores_mean")),
                color=color,
                marker=s.marker,
                linewidth=1.6,
                label=f"{name} mean{s.suffix}",
            )
            cpu.plot(
                xs,
                worst_line(s, at("cpu_cores_max")),
                color=color,
                marker=s.marker,
                linestyle="--",
                linewidth=1.1,
                markerfacecolor="white",
                label=f"{name} max{s.suffix}",
            )
            mib = [v / MIB for v in worst_line(s, at("memory_bytes_max"))]
            memory.plot(xs, mib, color=color, marker=s.marker, linewidth=1.6, label=f"{name} max{s.suffix}")
    if reasons:
        figure.text(0.01, 0.005, f"Unknown at some steps: {'; '.join(reasons)}", fontsize=8.5, color="grey")
    cpu.set_ylabel("server CPU (cores)")
    memory.set_ylabel("server memory, max (MiB)")
    cpu.set_ylim(bottom=0.0)
    memory.set_ylim(bottom=0.0)
    cpu.set_title(plot_title(doc, "server CPU (mean and max) and memory per node"))
    legend(memory)
    return finish(figure, axes, doc, series, path)


def _control_plane(doc: Mapping[str, Any], series: list[Series], path: Path) -> Path:
    figure, (ax,) = new_figure()
    known = known_values(series, lambda st: per_tenant(st, "ready_again_seconds"))
    if not any(per_tenant(st, "ready_again_seconds") for s in series for t in s.groups.values() for st in t):
        say(ax, "no step recorded when an instance was Ready again")
    objective = number(settings_of(doc).get("objective_seconds"))
    peak = max([*known, objective or 0.0, 1.0])
    tenant_points(
        ax,
        series,
        "ready_again_seconds",
        None,
        "Ready again per tenant",
        peak * 1.2,
        "not Ready again (or unknown)",
    )
    for s in series:
        line = worst_line(s, lambda st: worst(per_tenant(st, "ready_again_seconds")))
        ax.plot(
            [s.x(n) for n in s.groups],
            line,
            color=s.color,
            marker=s.marker,
            linewidth=1.6,
            label=f"slowest tenant{s.suffix}",
        )
    if objective is not None:
        ax.axhline(
            objective,
            color=LIMIT_COLOR,
            linestyle="--",
            linewidth=1.2,
            label=f"RTO objective ({objective:g} s), for reference",
        )
    ax.set_ylim(0.0, peak * 1.3)
    ax.set_ylabel("instance Ready again (seconds from the fault)")
    ax.set_title(plot_title(doc, "control plane, instance Ready again"))
    return finish(figure, [ax], doc, series, path)


def capacity_plots(doc: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Write the five plots into ``folder`` (see the module docstring); returns their paths."""
    target = Path(folder)
    series = [s for s in series_of(doc) if s.groups]
    if not series:
        return [empty_plot(doc, caption, target / name) for caption, name in PLOT_FILES.items()]
    settings = settings_of(doc)
    limit = number(settings.get("latency_limit_ms"))
    minimum = number(settings.get("min_efficiency"))
    files = list(PLOT_FILES.values())
    return [
        _rto(doc, series, target / files[0]),
        _single(
            doc,
            series,
            target / files[1],
            lambda st: measure(st, "latency_ms", "p99"),
            what="p99 write latency",
            ylabel="p99 write latency (ms)",
            title="p99 write latency by tenant count",
            limit=(limit, f"latency limit ({limit:g} ms)" if limit is not None else ""),
            high_is_bad=True,
        ),
        _single(
            doc,
            series,
            target / files[2],
            lambda st: measure(st, "efficiency"),
            what="efficiency",
            ylabel="efficiency (acknowledged / offered writes)",
            title="efficiency by tenant count",
            limit=(minimum, f"minimum efficiency ({minimum:g})" if minimum is not None else ""),
            high_is_bad=False,
        ),
        _nodes(doc, series, target / files[3]),
        _control_plane(doc, series, target / files[4]),
    ]
