"""The go/no-go decision: every checklist line judged by its gate, sign-offs applied, the verdict.

``evaluate(checklist, runs, document=..., sweeps=..., signoffs=...)`` decides each line
with the gate its id names (``reports.gates.judge``), then applies the sign-offs
(``reports.signoffs.apply_signoff``: only a MANUAL result of a gate a person signs
becomes SIGNED OFF; every other result stays, noting the sign-off was ignored).

**Verdict.** GO only if every gate of a mandatory section is PASS or SIGNED OFF.
Mandatory are every section except "Planned next improvements". ``PASS (lab only)``
(proven only by runs that are not on a real cluster), MANUAL (nothing here can check it
and no person signed it off, or the line has no gate id) and NOT RUN (no run exercised
it) block GO, and so does FAIL. The blocking gates are listed every FAIL first, then
lab only, NOT RUN, MANUAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reports.checklist import Checklist, ChecklistItem
from reports.gate_base import FAIL, LAB_ONLY, MANUAL, NOT_RUN, PASS, SIGNED_OFF, GateContext
from reports.gates import judge
from reports.gonogo_runs import Run, Sweep
from reports.signoffs import SignOff, SignOffOutcome, apply_signoff

__all__ = ["BLOCKING_ORDER", "PASSED", "UNMAPPED", "GateResult", "GoNoGo", "evaluate"]

UNMAPPED = "no automated check for this line (unmapped)"
BLOCKING_ORDER = (FAIL, LAB_ONLY, NOT_RUN, MANUAL)
PASSED = (PASS, SIGNED_OFF)  # the results that count as passed for GO
NOT_ON_CHECKLIST = "not applied: the checklist has no line for this gate"


@dataclass(frozen=True)
class GateResult:
    """One checklist line decided: ``gate_id`` is None when no gate is mapped to the line."""

    item: ChecklistItem
    result: str
    evidence: list[str]
    gate_id: str | None = None


@dataclass(frozen=True)
class GoNoGo:
    """The decision: the verdict, every line's result, what it was judged from, what sign-offs did."""

    verdict: str
    gates: list[GateResult]
    runs: list[Run]
    checklist: Checklist
    sweeps: list[Sweep] = field(default_factory=list)
    signoffs: list[SignOffOutcome] = field(default_factory=list)

    @property
    def blocking(self) -> list[GateResult]:
        """Mandatory gates that have not passed: every FAIL first, then lab only, NOT RUN, MANUAL."""
        pending = [g for g in self.gates if g.item.mandatory and g.result not in PASSED]
        return sorted(pending, key=lambda g: BLOCKING_ORDER.index(g.result))

    @property
    def unmapped(self) -> list[GateResult]:
        return [g for g in self.gates if g.gate_id is None]

    @property
    def signed_off(self) -> list[GateResult]:
        return [g for g in self.gates if g.result == SIGNED_OFF]


def _decide(item: ChecklistItem, ctx: GateContext) -> GateResult:
    gate_id = item.gate_id
    if gate_id is None:
        return GateResult(item, MANUAL, [UNMAPPED])
    status, evidence = judge(gate_id, ctx)
    return GateResult(item, status, evidence, gate_id)


def _signed(
    gates: list[GateResult], signoffs: Sequence[SignOff]
) -> tuple[list[GateResult], list[SignOffOutcome]]:
    """``gates`` with the sign-offs applied, and one outcome per sign-off (in its order)."""
    by_gate = {s.gate: s for s in signoffs}
    outcomes: dict[str, SignOffOutcome] = {}
    out: list[GateResult] = []
    for gate in gates:
        signoff = by_gate.get(gate.gate_id) if gate.gate_id else None
        if signoff is None:
            out.append(gate)
            continue
        status, evidence, outcome = apply_signoff(signoff, gate.result, gate.evidence)
        outcomes.setdefault(signoff.gate, outcome)
        out.append(GateResult(gate.item, status, evidence, gate.gate_id))
    shown = [outcomes.get(s.gate) or SignOffOutcome(s, False, NOT_ON_CHECKLIST) for s in signoffs]
    return out, shown


def evaluate(
    checklist: Checklist,
    runs: Sequence[Run],
    *,
    document: Path,
    base: Path | None = None,
    sweeps: Sequence[Sweep] = (),
    signoffs: Sequence[SignOff] = (),
) -> GoNoGo:
    """Decide every checklist line from ``runs``, capacity ``sweeps`` and people's ``signoffs``.

    Links to run folders are relative to ``base`` (default: the document's folder).
    """
    ctx = GateContext(list(runs), (base or document.parent).resolve(), document, list(sweeps))
    gates, outcomes = _signed([_decide(item, ctx) for item in checklist.items], signoffs)
    mandatory = [g for g in gates if g.item.mandatory]
    go = bool(mandatory) and all(g.result in PASSED for g in mandatory)
    return GoNoGo("GO" if go else "NO-GO", gates, list(runs), checklist, list(sweeps), outcomes)
