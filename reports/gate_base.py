"""What every gate shares: the result names, the evidence context and how parts combine.

A gate is a function from the runs (``GateContext``) to a ``Verdict``: a result and its
evidence lines. Gates register under their id (``registrar``) so each one is written
once, beside its id, and a second gate with the same id is an error at import.

**Sign-offs.** A gate only a person can judge is registered as ``manual(reason,
signable=True)``: that flag, on the registered gate, is the one place that says a
person's sign-off may decide it (``signable_ids(registry)``). A signed gate whose result
is MANUAL reads ``SIGNED OFF`` (``reports.signoffs``); a gate a machine checks is never
signable, and a sign-off never changes any other result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from reports.capacity_data import CAPACITY_NAME, CAPACITY_REPORT
from reports.gonogo_runs import Run, Sweep, as_dict, run_problems

__all__ = [
    "FAIL",
    "LAB_ONLY",
    "MANUAL",
    "NOT_RUN",
    "PASS",
    "SIGNED_OFF",
    "Decide",
    "GateContext",
    "ManualGate",
    "Verdict",
    "combine",
    "flag_gate",
    "is_signable",
    "manual",
    "problems_of",
    "registrar",
    "signable_ids",
]

PASS = "PASS"  # noqa: S105 - a gate result, not a password
FAIL = "FAIL"
NOT_RUN = "NOT RUN"
MANUAL = "MANUAL"
LAB_ONLY = "PASS (lab only)"
SIGNED_OFF = "SIGNED OFF"  # a MANUAL gate a person signed off (``reports.signoffs``): counts as passed

Verdict = tuple[str, list[str]]


@dataclass(frozen=True)
class GateContext:
    """The runs (and capacity sweeps) a gate judges, and where the document is.

    Links are relative to ``base``. A sweep's step runs are not in ``runs`` unless they
    were passed as run folders themselves.
    """

    runs: list[Run]
    base: Path
    document: Path
    sweeps: list[Sweep] = field(default_factory=list)

    def link(self, run: Run, sub: str = "", label: str | None = None) -> str:
        return self._link(run.path, sub, label or run.run_id)

    def sweep_link(self, sweep: Sweep, label: str | None = None) -> str:
        """The sweep's capacity.md (its capacity.json until the report has been rendered)."""
        report = CAPACITY_REPORT if (sweep.path / CAPACITY_REPORT).is_file() else CAPACITY_NAME
        return self._link(sweep.path, report, label or f"{sweep.sweep_id}/{report}")

    def _link(self, path: Path, sub: str, label: str) -> str:
        target = path.resolve() / sub if sub else path.resolve()
        rel = os.path.relpath(target, self.base)
        if not sub:
            rel += "/"
        rel = rel.replace(os.sep, "/")
        return f"[{label}]({f'<{rel}>' if ' ' in rel else rel})"

    @property
    def k8s(self) -> list[Run]:
        return [r for r in self.runs if r.is_k8s]

    def only(self, runs: Iterable[Run], sweeps: Iterable[Sweep] | None = None) -> GateContext:
        """The same document judged from fewer runs and sweeps (the production ones, for lab-only gates)."""
        return replace(self, runs=list(runs), sweeps=list(self.sweeps if sweeps is None else sweeps))


Decide = Callable[[GateContext], Verdict]


def registrar(registry: dict[str, Decide]) -> Callable[[str], Callable[[Decide], Decide]]:
    """``@gate("id")`` for one module's gates; an id used twice fails at import."""

    def gate(gate_id: str) -> Callable[[Decide], Decide]:
        def register(decide: Decide) -> Decide:
            if gate_id in registry:
                raise ValueError(f"gate id {gate_id!r} is defined twice")
            registry[gate_id] = decide
            return decide

        return register

    return gate


def combine(parts: Iterable[Verdict], none: Verdict) -> Verdict:
    """FAIL if any part fails, else PASS if any passes, else ``none``; evidence of the winners first."""
    parts = list(parts)
    for status in (FAIL, PASS):
        chosen = [p for p in parts if p[0] == status]
        if chosen:
            evidence = [e for p in chosen for e in p[1]]
            return status, evidence + [e for p in parts if p[0] not in (FAIL, PASS) for e in p[1]]
    return none[0], none[1] + [e for p in parts for e in p[1]]


def problems_of(ctx: GateContext, runs: Iterable[Run]) -> list[Verdict]:
    """A FAIL part per run with problems (``run_problems``), each problem naming its run."""
    out: list[Verdict] = []
    for run in runs:
        problems = run_problems(run)
        if problems:
            out.append((FAIL, [f"{ctx.link(run)}: {p}" for p in problems]))
    return out


@dataclass(frozen=True)
class ManualGate:
    """A gate no run can decide: always MANUAL with ``reason``.

    ``signable`` says a person's sign-off may decide it (``reports.signoffs``).
    """

    reason: str
    signable: bool = False

    def __call__(self, _ctx: GateContext) -> Verdict:
        return MANUAL, [self.reason]


def manual(reason: str, *, signable: bool = False) -> Decide:
    """A gate no run can decide; ``signable=True`` when a person's sign-off decides it."""
    return ManualGate(reason, signable)


def is_signable(decide: Decide) -> bool:
    """Whether this registered gate was marked ``manual(..., signable=True)``."""
    return isinstance(decide, ManualGate) and decide.signable


def signable_ids(registry: Mapping[str, Decide]) -> tuple[str, ...]:
    """The ids of ``registry`` a person may sign off, in registry order."""
    return tuple(gate_id for gate_id, decide in registry.items() if is_signable(decide))


def flag_gate(key: str, what: str, without: str) -> Decide:
    """A summary block ``{"ok": bool, "detail"}`` decides; without one the gate is MANUAL (``without``)."""

    def decide(ctx: GateContext) -> Verdict:
        parts: list[Verdict] = []
        for run in ctx.runs:
            block = as_dict(run.summary.get(key))
            if isinstance(block.get("ok"), bool):
                detail = f": {block['detail']}" if block.get("detail") else ""
                status = PASS if block["ok"] else FAIL
                parts.append(
                    (status, [f"{ctx.link(run)}: {what} {'ok' if block['ok'] else 'failed'}{detail}"])
                )
        return combine(parts, (MANUAL, [without]))

    return decide
