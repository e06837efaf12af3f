"""``capacity.json`` as the reports read it: steps, boundaries, the knee and the one-sentence answer.

A capacity sweep is a series of full measured chaos runs at increasing tenant counts N,
with the same fault at every step; the capacity search writes the sweep folder and its
``capacity.json`` (``kind: "capacity"``, ``schema: 1``): ``settings`` (tenant range,
write rates, fault, trials, objective, latency limit, minimum efficiency), one entry per
``steps`` run (tenants, write rate, trial, phase, ``run_dir`` relative to the sweep
folder, ``passed`` and its ``reasons``, RTO, lost writes, latency, efficiency, node
usage, control-plane times) and one ``boundaries`` entry per write rate (largest passing
and first failing tenant count).

Every number may be null: it is then unknown (None here, "unknown" in the report) and
is never read as 0. A write rate without a recorded boundary gets one derived from its
steps: a count passes only when every trial at it passed, the first failing count is the
smallest that did not, and the largest passing count is the largest passing one below it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.errors import ReportError
from reports.jsonfile import number, read_object

__all__ = [
    "CAPACITY_NAME",
    "CAPACITY_REPORT",
    "KNEE_EFFICIENCY_DROP",
    "KNEE_LATENCY_FACTOR",
    "Boundary",
    "answer",
    "answers",
    "boundary",
    "by_tenants",
    "check_capacity",
    "fmt_rate",
    "incomplete_reason",
    "knee",
    "knee_decided",
    "measure",
    "rate_answer",
    "read_capacity",
    "same_rate",
    "settings_of",
    "steps_at",
    "steps_of",
    "worst",
    "write_rates",
]

CAPACITY_NAME = "capacity.json"
CAPACITY_REPORT = "capacity.md"
CAPACITY_KIND = "capacity"
CAPACITY_SCHEMA = 1
KNEE_LATENCY_FACTOR = 2.0
KNEE_EFFICIENCY_DROP = 0.05
_EPSILON = 1e-9  # a drop of exactly 0.05 is not "more than 0.05", whatever the float rounding
_FIX = "pass the folder of a capacity sweep, whose capacity.json the capacity search wrote"


def check_capacity(doc: Mapping[str, Any], where: str | Path) -> None:
    """ReportError (one line, with the fix) when ``doc`` is not a capacity.json this version reads."""
    if doc.get("kind") != CAPACITY_KIND:
        raise ReportError(f"{where} is not a capacity sweep (kind {doc.get('kind')!r}); {_FIX}")
    if doc.get("schema") != CAPACITY_SCHEMA:
        raise ReportError(
            f"{where} has schema {doc.get('schema')!r} but this version reads schema {CAPACITY_SCHEMA}; "
            "render it with the version of the harness that wrote it"
        )
    for key, kind in (("steps", list), ("boundaries", list), ("settings", dict), ("target", dict)):
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise ReportError(f"{where}: '{key}' must be a JSON {kind.__name__} or null; {_FIX}")
    for index, step in enumerate(doc.get("steps") or [], start=1):
        tenants = step.get("tenants") if isinstance(step, dict) else None
        if not isinstance(tenants, int) or isinstance(tenants, bool) or tenants < 0:
            raise ReportError(f"{where}: step {index} has no tenant count (an integer 'tenants'); {_FIX}")
        if number(step.get("write_rate")) is None:
            raise ReportError(f"{where}: step {index} has no numeric 'write_rate'; {_FIX}")


def read_capacity(folder: str | Path) -> dict[str, Any]:
    """The capacity.json of a sweep folder, checked; ReportError naming the file and the fix."""
    path = Path(folder)
    if not path.is_dir():
        raise ReportError(f"sweep folder {path} does not exist; {_FIX}")
    file = path / CAPACITY_NAME
    if not file.is_file():
        raise ReportError(f"{file} is missing; {_FIX}")
    doc = read_object(file, _FIX)
    check_capacity(doc, file)
    return doc


# --------------------------------------------------------------------------- accessors


def settings_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    value = doc.get("settings")
    return value if isinstance(value, dict) else {}


def steps_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    value = doc.get("steps")
    return [s for s in value if isinstance(s, dict)] if isinstance(value, list) else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def same_rate(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def fmt_rate(rate: float) -> str:
    return f"{rate:g}"


def write_rates(doc: Mapping[str, Any]) -> list[float]:
    """Every write rate the settings, the boundaries or the steps name, in that order."""
    found: list[float] = []
    candidates = [
        *_list(settings_of(doc).get("write_rates")),
        *(b.get("write_rate") for b in _list(doc.get("boundaries")) if isinstance(b, dict)),
        *(s.get("write_rate") for s in steps_of(doc)),
    ]
    for value in candidates:
        rate = number(value)
        if rate is not None and not any(same_rate(rate, r) for r in found):
            found.append(rate)
    return found


def _tenants(step: Mapping[str, Any]) -> int | None:
    value = step.get("tenants")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def steps_at(steps: Iterable[Any], rate: float) -> list[dict[str, Any]]:
    """The steps at this write rate that name a tenant count."""
    out = []
    for step in steps:
        if not isinstance(step, dict) or _tenants(step) is None:
            continue
        value = number(step.get("write_rate"))
        if value is not None and same_rate(value, rate):
            out.append(step)
    return out


def by_tenants(steps: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Steps grouped by tenant count (every trial of a count together), smallest count first."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for step in steps:
        tenants = _tenants(step)
        if tenants is not None:
            groups.setdefault(tenants, []).append(step)
    return dict(sorted(groups.items()))


def measure(step: Mapping[str, Any], *path: str) -> float | None:
    """A number nested in a step (``measure(step, "latency_ms", "p99")``); None when unknown."""
    value: Any = step
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return number(value)


def worst(values: Sequence[float | None], *, high_is_bad: bool = True) -> float | None:
    """The worst of several trials' values; None when there is none or any one is unknown."""
    if not values or any(v is None for v in values):
        return None
    known = [v for v in values if v is not None]
    return max(known) if high_is_bad else min(known)


def incomplete_reason(doc: Mapping[str, Any]) -> str | None:
    """Why the sweep is not a finished result ("interrupted after 4 steps"); None when it is."""
    count = len(steps_of(doc))
    steps = f"{count} step{'s' if count != 1 else ''}"
    if doc.get("interrupted") is True:
        return f"interrupted after {steps}"
    if doc.get("complete") is True:
        return None
    if doc.get("ended_at") is None:
        return f"not finished (no end recorded) after {steps}"
    return f"stopped after {steps} before the search finished"


# --------------------------------------------------------------------------- boundary and knee


@dataclass(frozen=True)
class Boundary:
    """Largest passing and first failing tenant count at one write rate (None: there is none)."""

    write_rate: float
    largest_passing: int | None
    first_failing: int | None
    first_failing_reasons: list[str] = field(default_factory=list)
    nodes: int | None = None
    recorded: bool = True


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value if v] if isinstance(value, list) else []


def _failing_reasons(steps: Iterable[dict[str, Any]]) -> list[str]:
    reasons = [r for s in steps if s.get("passed") is not True for r in _strings(s.get("reasons"))]
    return list(dict.fromkeys(reasons))


def boundary(doc: Mapping[str, Any], rate: float) -> Boundary:
    """The recorded boundary at ``rate``, else one derived from the steps (see the module docstring)."""
    groups = by_tenants(steps_at(steps_of(doc), rate))
    for entry in _list(doc.get("boundaries")):
        value = number(entry.get("write_rate")) if isinstance(entry, dict) else None
        if value is None or not same_rate(value, rate):
            continue
        failing = _int(entry.get("first_failing"))
        reasons = _strings(entry.get("first_failing_reasons"))
        if failing is not None and not reasons:
            reasons = _failing_reasons(groups.get(failing, []))
        nodes = _int(entry.get("nodes"))
        return Boundary(rate, _int(entry.get("largest_passing")), failing, reasons, nodes)
    passing = {n: all(s.get("passed") is True for s in trials) for n, trials in groups.items()}
    failing = next((n for n, ok in passing.items() if not ok), None)
    below = [n for n, ok in passing.items() if ok and (failing is None or n < failing)]
    reasons = _failing_reasons(groups[failing]) if failing is not None else []
    return Boundary(rate, max(below) if below else None, failing, reasons, None, recorded=False)


def knee_decided(steps: Sequence[Any], write_rate: float) -> tuple[int | None, bool]:
    """(``knee``, whether the data decided it): ``(None, False)`` when a needed value is unknown."""
    groups = list(by_tenants(steps_at(steps, write_rate)).items())
    if len(groups) < 2:
        return None, True

    def p99(trials: list[dict[str, Any]]) -> float | None:
        return worst([measure(s, "latency_ms", "p99") for s in trials])

    def efficiency(trials: list[dict[str, Any]]) -> float | None:
        return worst([measure(s, "efficiency") for s in trials], high_is_bad=False)

    base_p99, base_efficiency = p99(groups[0][1]), efficiency(groups[0][1])
    if base_p99 is None or base_p99 <= 0 or base_efficiency is None:
        return None, False
    for tenants, trials in groups[1:]:
        latency, eff = p99(trials), efficiency(trials)
        if latency is not None and latency >= KNEE_LATENCY_FACTOR * base_p99:
            return tenants, True
        if eff is not None and base_efficiency - eff > KNEE_EFFICIENCY_DROP + _EPSILON:
            return tenants, True
        if latency is None or eff is None:
            return None, False
    return None, True


def knee(steps: Sequence[Any], write_rate: float) -> int | None:
    """The knee of the curve at ``write_rate``: where the operator starts to strain.

    Take every step at that rate, passing or failing, and collapse the trials of each
    tenant count N to the worst one (highest p99 latency, lowest efficiency). Against the
    smallest N, the knee is the first larger N whose p99 latency is at least twice the
    smallest N's, or whose efficiency is more than 0.05 below the smallest N's.

    None when no N qualifies, when there are fewer than two counts, or when a value the
    rule needs is missing before a qualifying N is found (a p99 or an efficiency that is
    unknown for the smallest N or for an N on the way, or a p99 of 0 to double): the knee
    could be there, so none is claimed.
    """
    return knee_decided(steps, write_rate)[0]


# --------------------------------------------------------------------------- the answer


def _count(tenants: int, nodes: int | None) -> str:
    if nodes is not None and nodes > 1:
        per = tenants / nodes
        if per.is_integer():
            return f"{per:.0f} tenants per node ({tenants} in all on {nodes} nodes)"
        return f"{tenants} tenants on {nodes} nodes ({per:.1f} per node)"
    if nodes == 1:
        return f"{tenants} tenants on 1 node"
    return f"{tenants} tenants in all"


def _reasons(reasons: list[str]) -> str:
    return "; ".join(reasons) if reasons else "no reason recorded"


def rate_answer(doc: Mapping[str, Any], rate: float) -> str:
    """One clause: what the sweep found at ``rate`` (lower case, no full stop)."""
    settings = settings_of(doc)
    found = boundary(doc, rate)
    groups = by_tenants(steps_at(steps_of(doc), rate))
    fault = settings.get("fault")
    where = f"at {fmt_rate(rate)} writes/s under {fault if fault else 'an unrecorded fault'}"
    objective = number(settings.get("objective_seconds"))
    within = (
        f"within the {objective:g} s objective" if objective is not None else "within an unrecorded objective"
    )
    passing, failing = found.largest_passing, found.first_failing
    if passing is None and failing is None:
        if not groups:
            return f"no step ran {where}: no result"
        return f"no boundary was decided {where} ({len(groups)} tenant counts ran)"
    if passing is None:
        smallest, reasons = failing, found.first_failing_reasons
        if groups and min(groups) != failing:
            smallest = min(groups)
            reasons = _failing_reasons(groups[smallest]) or reasons
        return f"no tenant count passed {where}: the smallest step, {smallest}, failed ({_reasons(reasons)})"
    capacity = _count(passing, found.nodes)
    if failing is not None:
        return (
            f"at most {capacity} {where} {within}; "
            f"the first failing step was {failing} ({_reasons(found.first_failing_reasons)})"
        )
    beyond = (
        ", the capacity lies beyond the sweep" if incomplete_reason(doc) is None else " before it stopped"
    )
    return f"at least {capacity} {where} {within}: no step up to {passing} failed{beyond}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def answers(doc: Mapping[str, Any]) -> list[str]:
    """One sentence per write rate (with the sweep's incompleteness first, when it is incomplete)."""
    reason = incomplete_reason(doc)
    prefix = f"incomplete: {reason}; " if reason else ""
    rates = write_rates(doc)
    if not steps_of(doc) or not rates:
        return [_sentence(f"{prefix}no result: the sweep recorded no step")]
    return [_sentence(prefix + rate_answer(doc, rate)) for rate in rates]


def answer(doc: Mapping[str, Any]) -> str:
    """The sweep's answer: one sentence per write rate, joined.

    For example "At most 34 tenants per node (68 in all on 2 nodes) at 20 writes/s under
    pod-eviction within the 60 s objective; the first failing step was 38 (p99 latency
    212 ms over the 200 ms limit)."
    """
    return " ".join(answers(doc))
