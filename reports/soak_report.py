"""A soak's part of the run report: its Markdown section and its plots.

``soak_section(block, plots)`` renders summary.json's ``soak`` block
(:mod:`probes.soak_summary`): planned against covered hours, complete or INCOMPLETE in
words, every violation, the backup-age maximum per tenant against the RPO budget, the
drills and the slopes table. ``soak_plots(run_dir, block)`` draws from
``soak/checks.jsonl`` (matplotlib, Agg, as :mod:`reports.plots`):

- ``soak-backup-age.png``: each tenant's newest-log-backup age per round, the budget
  as a dashed line, drills and planned faults marked;
- ``soak-memory.png`` and ``soak-connections.png``: each pod's memory (MiB) and open
  connections per round, a leaking pod drawn thick and named;
- ``soak-load.png``: acknowledged writes per second and p99 latency per tenant per round.

A value that was not measured is a gap in its line, never a 0. The x axis is hours since
the soak started (minutes for a soak under two hours).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probes.errors import ProbeError
from probes.soak_folder import SoakFolder, duration_text, load_soak, number
from reports.errors import ReportError
from reports.times import utc_iso

__all__ = ["BACKUP_AGE_PLOT", "CONNECTIONS_PLOT", "LOAD_PLOT", "MEMORY_PLOT", "soak_plots", "soak_section"]

BACKUP_AGE_PLOT = "soak-backup-age.png"
MEMORY_PLOT = "soak-memory.png"
CONNECTIONS_PLOT = "soak-connections.png"
LOAD_PLOT = "soak-load.png"
CANNOT_TELL = "cannot tell"
_DPI = 110
_BUDGET_COLOR = "#6a1b9a"
_DRILL_COLOR = "#2a7f3f"
_FAULT_COLOR = "#37474f"
_LEAK_COLOR = "#c62828"
_MIB = 1024.0 * 1024.0


# --------------------------------------------------------------------------- Markdown


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seconds(value: Any) -> str:
    found = number(value)
    return CANNOT_TELL if found is None else f"{found:.0f}"


def _headline(block: Mapping[str, Any]) -> list[str]:
    planned, covered = number(block.get("planned_seconds")), number(block.get("covered_seconds"))
    violations = block.get("violations") or []
    span = f"{duration_text(covered)} of {duration_text(planned)} planned"
    if block.get("complete") is not True:
        reason = block.get("incomplete_reason") or "no end.json: killed or still running"
        state = f"**Soak: INCOMPLETE** ({span}): {reason}. An incomplete soak is not a result."
    elif violations:
        state = (
            f"**Soak: {len(violations)} violation{'s' if len(violations) != 1 else ''}** ({span}, complete)."
        )
    else:
        state = f"**Soak: clean** ({span}, complete): no violation."
    grace = _mapping(block.get("restart_grace"))
    lines = [
        state,
        "",
        f"- {block.get('checks', 0)} check rounds, one every {number(block.get('check_seconds')) or 0:g} s, "
        f"from {utc_iso(number(block.get('started_at'))) or CANNOT_TELL}"
        + (f" to {utc_iso(number(block.get('ended_at')))}." if number(block.get("ended_at")) else "."),
        f"- RPO budget for the newest log backup: {_seconds(block.get('rpo_budget_seconds'))} s; "
        f"a leak is a floor rising more than {100 * (number(block.get('leak_per_hour')) or 0.1):g} % of its "
        "first value per hour.",
    ]
    restarts = block.get("restarts") or {}
    planned_restarts = block.get("restarts_planned") or {}
    if restarts:
        shown = ", ".join(
            f"{pod} {n} ({planned_restarts.get(pod, 0)} planned)" for pod, n in restarts.items()
        )
        lines.append(
            f"- Restarts: {shown}; a planned fault explains a restart within {grace.get('from', '?')}."
        )
    else:
        lines.append("- Restarts: none.")
    limits = block.get("limits") or []
    lines += [f"- Not measurable on this target: {limit}." for limit in limits]
    return [*lines, ""]


def _violations(block: Mapping[str, Any]) -> list[str]:
    violations = [v for v in block.get("violations") or [] if isinstance(v, Mapping)]
    if not violations:
        return ["### Violations", "", "None.", ""]
    lines = ["### Violations", ""]
    for v in violations:
        when = utc_iso(number(v.get("at")))
        lines.append(f"- `{v.get('check')}`{f' {when}' if when else ''}: {v.get('text')}")
    return [*lines, ""]


def _backups(block: Mapping[str, Any]) -> list[str]:
    ages = _mapping(block.get("backup_age_max"))
    budget = number(block.get("rpo_budget_seconds"))
    rows = []
    for tenant, age in ages.items():
        value = number(age)
        over = CANNOT_TELL if value is None or budget is None else ("**yes**" if value > budget else "no")
        rows.append([tenant, _seconds(value), over])
    lines = ["### Newest log backup age", ""]
    lines += _table(["tenant", "max age s", "over the budget"], rows) if rows else ["No tenant measured."]
    return [*lines, ""]


def _drills(block: Mapping[str, Any]) -> list[str]:
    drills = _mapping(block.get("drills"))
    count = {k: int(number(drills.get(k)) or 0) for k in ("planned", "run", "validated", "failed")}
    return [
        "### Restore drills",
        "",
        f"{count['planned']} planned, {count['run']} run: {count['validated']} validated, "
        f"{count['failed']} failed (a failed drill is listed under Violations).",
        "",
    ]


def _slope_row(s: Mapping[str, Any]) -> list[str]:
    memory = s.get("metric") == "memory_bytes"
    first, per_hour = number(s.get("first_floor")), number(s.get("per_hour"))
    if s.get("leak") is None:
        verdict = f"{CANNOT_TELL}: {s.get('reason')}"
    else:
        verdict = "**LEAK**" if s.get("leak") else "no leak"
    scale = _MIB if memory else 1.0
    unit = " MiB" if memory else ""
    share = CANNOT_TELL if first is None or per_hour is None else f"{100 * per_hour / max(first, 1.0):+.1f} %"
    return [
        str(s.get("pod")),
        str(s.get("role")),
        "memory" if memory else "connections",
        str(s.get("samples")),
        CANNOT_TELL if first is None else f"{first / scale:.1f}{unit}",
        CANNOT_TELL if per_hour is None else f"{per_hour / scale:+.2f}{unit}",
        share,
        verdict,
    ]


def _slopes(block: Mapping[str, Any]) -> list[str]:
    slopes = [s for s in block.get("slopes") or [] if isinstance(s, Mapping)]
    lines = ["### Memory and connections: slopes", ""]
    if not slopes:
        return [*lines, "No pod was measured.", ""]
    lines += [
        "Each pod's longest stretch without a restart, cut into time windows; the floor is each window's "
        "minimum. A leak is floors rising in every window faster than the threshold (a saw-tooth is not).",
        "",
    ]
    header = [
        "pod",
        "role",
        "metric",
        "samples",
        "first floor",
        "floor slope / h",
        "of first floor / h",
        "verdict",
    ]
    return [*lines, *_table(header, [_slope_row(s) for s in slopes]), ""]


def soak_section(block: Mapping[str, Any], plots: Mapping[str, str] | None = None) -> list[str]:
    """The report's "Soak" section as Markdown lines; ``plots`` maps captions to image paths."""
    lines = ["## Soak", "", *_headline(block), *_violations(block), *_backups(block)]
    lines += _drills(block) + _slopes(block)
    for caption, path in (plots or {}).items():
        target = f"<{path}>" if " " in path else path
        lines += [f"### {caption}", "", f"![{_cell(caption)}]({target})", ""]
    return lines


# --------------------------------------------------------------------------- plots


def _figure(rows: int = 1) -> tuple[Figure, list[Any]]:
    figure = Figure(figsize=(12.5, 3.6 * rows + 1.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)
    return figure, [a for row in axes for a in row]


def _save(figure: Figure, path: Path) -> None:
    try:
        figure.savefig(path, format="png", dpi=_DPI)
    except OSError as exc:
        raise ReportError(f"cannot write plot {path}: {exc.strerror or exc}; check the folder") from exc


class _Axis:
    """Hours (minutes for a soak under two hours) since the soak started."""

    def __init__(self, soak: SoakFolder) -> None:
        self.start = soak.plan.started_at
        short = max(soak.plan.seconds, soak.covered_seconds) < 7200
        self.unit, self.label = (60.0, "minutes") if short else (3600.0, "hours")

    def x(self, at: float) -> float:
        return (at - self.start) / self.unit

    def finish(self, axes: Any, ylabel: str, legend: bool = True) -> None:
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        handles, _labels = axes.get_legend_handles_labels()
        if legend and handles:
            axes.legend(
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                borderaxespad=0.0,
                fontsize=7.5,
                ncol=1 + len(handles) // 20,
            )


def _value(entry: Any, key: str, scale: float = 1.0) -> float:
    found = number(entry.get(key)) if isinstance(entry, Mapping) else None
    return math.nan if found is None else found / scale


def _series(soak: SoakFolder, part: str) -> dict[str, list[tuple[float, Any]]]:
    out: dict[str, list[tuple[float, Any]]] = {}
    for round_ in soak.rounds:
        entries = round_.get(part)
        for key, entry in entries.items() if isinstance(entries, Mapping) else []:
            out.setdefault(str(key), []).append((float(round_["at"]), entry))
    return out


def _marks(axes: Any, soak: SoakFolder, axis: _Axis) -> None:
    for index, drill in enumerate(soak.drills):
        at = number(drill.get("started_at"))
        if at is not None:
            ok = drill.get("result") == "validated"
            axes.axvline(
                axis.x(at),
                color=_DRILL_COLOR if ok else _LEAK_COLOR,
                linestyle=":",
                linewidth=1.3,
                label=None if index else "restore drill",
            )
    for index, (offset, action) in enumerate(soak.plan.faults):
        axes.axvline(
            axis.x(soak.plan.started_at + offset),
            color=_FAULT_COLOR,
            linewidth=1.0,
            alpha=0.7,
            label=None if index else f"planned fault ({action or 'fault'})",
        )


def _backup_plot(path: Path, soak: SoakFolder, axis: _Axis) -> None:
    figure, (axes,) = _figure()
    for tenant, points in sorted(_series(soak, "backups").items()):
        axes.plot([axis.x(at) for at, _ in points], [_value(e, "age") for _, e in points], label=tenant)
    axes.axhline(
        soak.plan.rpo_budget_seconds,
        color=_BUDGET_COLOR,
        linestyle="--",
        linewidth=1.5,
        label=f"RPO budget ({soak.plan.rpo_budget_seconds:g} s)",
    )
    _marks(axes, soak, axis)
    axes.set_ylim(bottom=0.0)
    axes.set_title("Age of the newest log backup per tenant, at each check round")
    axes.set_xlabel(f"{axis.label} since the soak started")
    axis.finish(axes, "seconds since the newest log backup ended")
    _save(figure, path)


def _pod_plot(path: Path, soak: SoakFolder, axis: _Axis, key: str, leaks: set[str]) -> None:
    memory = key == "memory_bytes"
    figure, (axes,) = _figure()
    for pod, points in sorted(_series(soak, "pods").items()):
        leaking = pod in leaks
        axes.plot(
            [axis.x(at) for at, _ in points],
            [_value(e, key, _MIB if memory else 1.0) for _, e in points],
            label=f"{pod} (LEAK)" if leaking else pod,
            linewidth=2.6 if leaking else 1.1,
            color=_LEAK_COLOR if leaking else None,
        )
    _marks(axes, soak, axis)
    axes.set_ylim(bottom=0.0)
    what = "Memory (MiB)" if memory else "Open connections"
    axes.set_title(f"{what} per pod, at each check round (a leak lifts the troughs)")
    axes.set_xlabel(f"{axis.label} since the soak started")
    axis.finish(axes, "MiB" if memory else "connections")
    _save(figure, path)


def _load_plot(path: Path, soak: SoakFolder, axis: _Axis) -> None:
    figure, (rate_axes, p99_axes) = _figure(2)
    times = [float(r["at"]) for r in soak.rounds]
    intervals = {t: t - p for p, t in zip([soak.plan.started_at, *times], times, strict=False)}
    for tenant, points in sorted(_series(soak, "load").items()):
        xs = [axis.x(at) for at, _ in points]
        rates = [_value(e, "acks") / intervals[at] if intervals[at] > 0 else math.nan for at, e in points]
        rate_axes.plot(xs, rates, label=tenant)
        p99_axes.plot(xs, [_value(e, "p99_ms") for _, e in points], label=tenant)
    rate_axes.set_title("Acknowledged writes per second and p99 write latency per tenant, per check round")
    rate_axes.set_ylim(bottom=0.0)
    p99_axes.set_ylim(bottom=0.0)
    p99_axes.set_xlabel(f"{axis.label} since the soak started")
    axis.finish(rate_axes, "acknowledged writes / s")
    axis.finish(p99_axes, "p99 latency (ms)", legend=False)
    _save(figure, path)


def _leaking(block: Mapping[str, Any] | None, metric: str) -> set[str]:
    slopes: Sequence[Any] = (block or {}).get("slopes") or []
    return {
        str(s.get("pod"))
        for s in slopes
        if isinstance(s, Mapping) and s.get("metric") == metric and s.get("leak")
    }


def soak_plots(run_dir: str | Path, block: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Draw the soak's plots into ``run_dir``; caption -> file name (relative to ``run_dir``).

    Empty when the run has no ``soak/`` folder. ``block`` (the summary's ``soak`` block)
    marks the leaking pods. ReportError when ``soak/plan.json`` is unusable or a plot
    cannot be written.
    """
    folder = Path(run_dir)
    try:
        soak = load_soak(folder)
    except ProbeError as exc:
        raise ReportError(str(exc)) from None
    if soak is None:
        return {}
    axis = _Axis(soak)
    _backup_plot(folder / BACKUP_AGE_PLOT, soak, axis)
    _pod_plot(folder / MEMORY_PLOT, soak, axis, "memory_bytes", _leaking(block, "memory_bytes"))
    _pod_plot(folder / CONNECTIONS_PLOT, soak, axis, "connections", _leaking(block, "connections"))
    _load_plot(folder / LOAD_PLOT, soak, axis)
    return {
        "Soak: newest log backup age per tenant": BACKUP_AGE_PLOT,
        "Soak: memory per pod": MEMORY_PLOT,
        "Soak: open connections per pod": CONNECTIONS_PLOT,
        "Soak: ack rate and p99 latency per tenant": LOAD_PLOT,
    }
