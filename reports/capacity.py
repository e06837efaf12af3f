"""The capacity sweep's report: ``capacity.md`` and its plots, written from ``capacity.json``.

``write_capacity_report(doc, folder)`` (``python -m reports capacity SWEEP_DIR`` reads the
document from the folder) writes, into the sweep folder: the answer first (``answer``:
one sentence per write rate), an INCOMPLETE banner when the sweep did not finish, where
it ran, the settings, one row per step with a link to that step's own run report, the
plots (``reports.capacity_plots``) and the boundary per write rate with its knee
(``knee``). A value the sweep could not know reads "unknown", never 0.

What ``capacity.json`` holds and how a boundary is read from it: ``reports.capacity_data``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.files import replace_text
from reports.capacity_data import (
    CAPACITY_NAME,
    CAPACITY_REPORT,
    KNEE_EFFICIENCY_DROP,
    KNEE_LATENCY_FACTOR,
    answer,
    answers,
    boundary,
    check_capacity,
    fmt_rate,
    incomplete_reason,
    knee,
    knee_decided,
    measure,
    read_capacity,
    settings_of,
    steps_of,
    write_rates,
)
from reports.capacity_plots import PLOT_FILES, capacity_plots
from reports.errors import ReportError
from reports.gonogo_runs import Target
from reports.html import write_html
from reports.jsonfile import number
from reports.times import parse_time, utc_iso

__all__ = [
    "CAPACITY_REPORT",
    "UNKNOWN",
    "answer",
    "knee",
    "render_capacity",
    "render_sweep",
    "write_capacity_report",
]

UNKNOWN = "unknown"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _fmt(value: float | None, digits: int = 2) -> str:
    return UNKNOWN if value is None else f"{value:.{digits}f}"


def _whole(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.0f}"


def _plain(value: Any) -> str:
    if value is None or value in ("", []):
        return UNKNOWN
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _time(value: Any) -> str:
    shown = utc_iso(parse_time(value))
    return shown if shown is not None else (str(value) if value else UNKNOWN)


def _link(path: str) -> str:
    return f"<{path}>" if " " in path else path


def _where(doc: Mapping[str, Any]) -> list[str]:
    raw = doc.get("target")
    target = Target.read(raw)
    names = raw.get("nodes") if isinstance(raw, dict) else None
    nodes = f"; nodes {', '.join(str(n) for n in names)}" if isinstance(names, list) and names else ""
    if target.production:
        verdict = "production evidence for the operator under test"
    else:
        verdict = (
            "not production evidence: it proves the harness and the stand-ins, not the operator under test"
        )
    steps = len(steps_of(doc))
    eta = number(doc.get("eta_seconds"))
    left = (
        f", about {eta / 60:.0f} min left when last written"
        if eta is not None and incomplete_reason(doc)
        else ""
    )
    return [
        f"- Target: {target.describe()}{nodes} ({verdict}).",
        f"- Started {_time(doc.get('started_at'))}, ended {_time(doc.get('ended_at'))} (UTC); "
        f"{steps} step{'s' if steps != 1 else ''}{left}.",
        "",
    ]


def _settings(doc: Mapping[str, Any]) -> list[str]:
    s = settings_of(doc)
    rates = [fmt_rate(r) for r in (number(v) for v in s.get("write_rates") or []) if r is not None]
    rows = [
        [
            "tenant counts",
            f"{_plain(s.get('tenants_from'))} to {_plain(s.get('tenants_to'))}, "
            f"step {_plain(s.get('tenants_step'))}, bisected to {_plain(s.get('precision'))}",
        ],
        ["write rates (writes/s per tenant)", ", ".join(rates) or UNKNOWN],
        ["fault at every step", _plain(s.get("fault"))],
        ["trials per boundary count", _plain(s.get("trials"))],
        ["RTO objective (s)", _plain(s.get("objective_seconds"))],
        ["p99 write latency limit (ms)", _plain(s.get("latency_limit_ms"))],
        ["minimum efficiency", _plain(s.get("min_efficiency"))],
    ]
    return ["## Settings", "", *_table(["setting", "value"], rows), ""]


def _result(step: Mapping[str, Any]) -> str:
    passed = step.get("passed")
    return "pass" if passed is True else "**FAIL**" if passed is False else UNKNOWN


def _step_reasons(step: Mapping[str, Any]) -> str:
    reasons = "; ".join(str(r) for r in step.get("reasons") or [] if r)
    if reasons or step.get("passed") is True:
        return reasons
    return "no reason recorded" if step.get("passed") is False else UNKNOWN


def _run_link(step: Mapping[str, Any], folder: Path | None) -> str:
    run_dir = step.get("run_dir")
    if not isinstance(run_dir, str) or not run_dir:
        return UNKNOWN
    run_dir = run_dir.rstrip("/")
    name = run_dir.replace(os.sep, "/").rsplit("/", 1)[-1]
    if folder is not None and not (folder / run_dir / "report.md").is_file():
        return f"[{name}/]({_link(run_dir + '/')}) (no report.md)"
    return f"[{name}]({_link(run_dir + '/report.md')})"


def _steps(doc: Mapping[str, Any], folder: Path | None) -> list[str]:
    rows = []
    for step in steps_of(doc):
        lost = number(step.get("lost"))
        late = number(step.get("late_starts"))
        rows.append(
            [
                str(step.get("tenants")),
                fmt_rate(number(step.get("write_rate")) or 0.0),
                _plain(step.get("trial")),
                _plain(step.get("phase")),
                _fmt(measure(step, "rto", "worst")),
                _fmt(measure(step, "rto", "p95")),
                _whole(lost),
                _fmt(measure(step, "latency_ms", "p99"), 1),
                _fmt(measure(step, "efficiency"), 3),
                _whole(late),
                _result(step),
                _step_reasons(step),
                _run_link(step, folder),
            ]
        )
    header = [
        "N",
        "writes/s",
        "trial",
        "phase",
        "worst RTO s",
        "p95 RTO s",
        "lost",
        "p99 latency ms",
        "efficiency",
        "late starts",
        "result",
        "reasons",
        "run",
    ]
    body = _table(header, rows) if rows else ["No step ran: the sweep has no result."]
    return ["## Steps", "", *body, ""]


def _boundary(doc: Mapping[str, Any]) -> list[str]:
    rows = []
    for rate in write_rates(doc):
        found = boundary(doc, rate)
        passing, nodes = found.largest_passing, found.nodes
        per = UNKNOWN if passing is None or not nodes else f"{passing / nodes:.1f}".removesuffix(".0")
        bend, decided = knee_decided(steps_of(doc), rate)
        rows.append(
            [
                fmt_rate(rate),
                "none passed" if passing is None and found.first_failing is not None else _plain(passing),
                "none failed"
                if found.first_failing is None and passing is not None
                else _plain(found.first_failing),
                "; ".join(found.first_failing_reasons) or ("" if found.first_failing is None else UNKNOWN),
                _plain(nodes),
                per,
                str(bend) if bend is not None else "none" if decided else UNKNOWN,
                "capacity.json" if found.recorded else "derived from the steps",
            ]
        )
    header = [
        "writes/s",
        "largest passing N",
        "first failing N",
        "why it failed",
        "nodes",
        "per node",
        "knee N",
        "from",
    ]
    rule = (
        f"The knee is the first tenant count, above the smallest, whose p99 write latency is at least "
        f"{KNEE_LATENCY_FACTOR:g} times the smallest count's, or whose efficiency is more than "
        f"{KNEE_EFFICIENCY_DROP:g} below it (the worst trial of each count; none is claimed when a value "
        "it needs is unknown). A count passes only when every trial at it passed."
    )
    return ["## Boundary", "", *(_table(header, rows) if rows else ["No write rate recorded."]), "", rule, ""]


def render_capacity(doc: Mapping[str, Any], plots: Mapping[str, str], folder: Path | None = None) -> str:
    """capacity.md as text; ``plots`` maps a caption to a path relative to the sweep folder."""
    lines = [f"# Capacity sweep {doc.get('sweep_id') or '?'}", ""]
    for sentence in answers(doc):
        lines += [sentence, ""]
    reason = incomplete_reason(doc)
    if reason:
        lines += [
            f"> **INCOMPLETE**: {reason}. The numbers below are what the sweep reached, not its result; "
            "run the sweep to the end for an answer.",
            "",
        ]
    lines += _where(doc)
    lines += _settings(doc)
    lines += _steps(doc, folder)
    if plots:
        lines += ["## Plots", ""]
        for caption, path in plots.items():
            lines += [f"### {caption}", "", f"![{_cell(caption)}]({_link(path)})", ""]
    lines += _boundary(doc)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_capacity_report(doc: dict[str, Any], folder: Path) -> Path:
    """Write the plots, ``capacity.md`` and ``capacity.html`` into the sweep ``folder``; returns the .md."""
    target = Path(folder)
    check_capacity(doc, target / CAPACITY_NAME)
    written = capacity_plots(doc, target)
    plots = {caption: path.name for caption, path in zip(PLOT_FILES, written, strict=True)}
    body = render_capacity(doc, plots, target)
    report = target / CAPACITY_REPORT
    try:
        replace_text(report, body)
    except OSError as exc:
        raise ReportError(f"cannot write {report}: {exc.strerror or exc}; check the sweep folder") from None
    write_html(report)
    return report


def render_sweep(folder: str | Path) -> Path:
    """Read a sweep folder's capacity.json and write its report and plots again; returns the report."""
    return write_capacity_report(read_capacity(folder), Path(folder))
