"""What a verdict may rest on, beside the RTO and RPO numbers: liveness and the run's own story.

A run whose load died, whose journal has stretches no fault explains, whose fault was
never completed or whose experiment did not complete cannot be GO, whatever its numbers
say: the harness cannot tell what happened then. These checks turn each of those into a
violation with its reason; :func:`probes.analysis.analyze` adds them to the verdict.

- **Measurement gap**: a stretch longer than :func:`gap_limit` in which a tenant has no
  journal record (each attempt covers ``[start, end]``), up to the moment the load was
  asked to stop, that does not begin inside one of the tenant's outage windows (from
  shortly before a fault to that tenant's recovery), where hung calls legitimately
  journal nothing.
- **Run violations**: a Chaos Toolkit status other than ``completed``, failed activities,
  a fault whose injection never ended, a load process that died or exited non-zero.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from loadgen.journal import Write
from probes.model import Fault, RunContext, TenantResult

__all__ = ["GOOD_CHAOS_STATUSES", "clock_text", "gap_limit", "measurement_gaps", "run_violations"]

GOOD_CHAOS_STATUSES = ("completed",)


def gap_limit(write_rate: float | None) -> float:
    """Longest stretch a tenant may go without a journal record: 3 write intervals, at least 2 s.

    While a server is down each attempt still ends within the write or connect timeout
    (0.5 s) plus a short backoff, so a healthy load journals far more often than this.
    """
    if not write_rate or write_rate <= 0:
        return 2.0
    return max(2.0, 3.0 / write_rate)


def clock_text(epoch: float) -> str:
    """``HH:MM:SS.s`` (UTC) for messages a person reads."""
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 10)}"


def _coverage_gaps(writes: Sequence[Write], until: float | None, limit: float) -> list[tuple[float, float]]:
    """Stretches longer than ``limit`` that no attempt's ``[start, end]`` covers, up to ``until``."""
    gaps: list[tuple[float, float]] = []
    covered: float | None = None
    for w in sorted(writes, key=lambda w: w.start):
        if covered is not None and w.start - covered > limit:
            gaps.append((covered, w.start))
        covered = w.end if covered is None else max(covered, w.end)
    if covered is not None and until is not None and until - covered > limit:
        gaps.append((covered, until))
    return gaps


def _explained(gap: tuple[float, float], outages: Sequence[tuple[float, float | None]], limit: float) -> bool:
    """A gap that begins inside an outage window (shortly before a fault up to recovery)."""
    lo, _hi = gap
    return any(f_at - limit <= lo and (end is None or lo < end) for f_at, end in outages)


def measurement_gaps(
    writes: Sequence[Write], results: Sequence[TenantResult], faults: Sequence[Fault], context: RunContext
) -> list[tuple[float, float]]:
    load = context.load
    if load is None or not writes:
        return []
    limit = gap_limit(context.write_rate)
    until = load.stop_requested_at or load.died_at or load.ended_at
    outages = [(f.injected_at, r.recovered_at) for f, r in zip(faults, results, strict=True)]
    return [g for g in _coverage_gaps(writes, until, limit) if not _explained(g, outages, limit)]


def run_violations(faults: Sequence[Fault], context: RunContext) -> list[str]:
    """What the orchestrator and the fault log say went wrong, beside the numbers."""
    out: list[str] = []
    status = context.chaos_status
    if status is not None and status not in GOOD_CHAOS_STATUSES:
        if status == "running":
            out.append("the run never finished (status 'running'): its orchestrator stopped before the end")
        else:
            out.append(f"the experiment ended {status!r}, not 'completed': its result cannot be trusted")
    out += list(context.failed_activities)
    for fault in faults:
        if fault.ended_at is None:
            out.append(
                f"{fault.name}: the injection never completed (refused, failed or interrupted): "
                "cannot tell whether the fault happened"
            )
    load = context.load
    if load is not None:
        if load.died_at is not None:
            code = "" if load.exit_code is None else f" (exit status {load.exit_code})"
            out.append(
                f"the load process died at {clock_text(load.died_at)} UTC{code}, before the run asked it "
                "to stop: writes after that were not measured"
            )
        elif load.exit_code not in (None, 0):
            out.append(
                f"the load process ended with exit status {load.exit_code}: the journal may be incomplete"
            )
    return out
