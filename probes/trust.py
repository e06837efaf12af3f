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
- **Cluster load collection** (:func:`collection_verdict`): a cluster load's workers ship
  their journals to the Locust master. A tenant written by a worker whose journal did
  not fully arrive (no final message, missing batches, fewer records than it sent) has
  its losses "cannot tell", and the run a violation naming the worker and the gap. When
  the collection status is missing, inconsistent or names no culprit, every tenant is
  "cannot tell" (fail closed). Each of the load's ``problems`` is a violation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from loadgen.journal import Write
from probes.model import Fault, LoadCollection, LoadLife, RunContext, TenantResult, WorkerCollection

__all__ = [
    "GOOD_CHAOS_STATUSES",
    "CollectionVerdict",
    "clock_text",
    "collection_verdict",
    "gap_limit",
    "load_until",
    "measurement_gaps",
    "run_violations",
    "unexplained_gaps",
    "worker_gap",
    "worker_name",
]

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


def load_until(load: LoadLife) -> float | None:
    """Until when the journal must cover every tenant: the stop request, else the load's death or end."""
    return load.stop_requested_at or load.died_at or load.ended_at


def unexplained_gaps(
    gaps: Sequence[tuple[float, float]],
    results: Sequence[TenantResult],
    faults: Sequence[Fault],
    limit: float,
) -> list[tuple[float, float]]:
    """The coverage ``gaps`` of one tenant that begin in none of its outage windows."""
    outages = [(f.injected_at, r.recovered_at) for f, r in zip(faults, results, strict=True)]
    return [g for g in gaps if not _explained(g, outages, limit)]


def measurement_gaps(
    writes: Sequence[Write], results: Sequence[TenantResult], faults: Sequence[Fault], context: RunContext
) -> list[tuple[float, float]]:
    load = context.load
    if load is None or not writes:
        return []
    limit = gap_limit(context.write_rate)
    return unexplained_gaps(_coverage_gaps(writes, load_until(load), limit), results, faults, limit)


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


@dataclass(frozen=True)
class CollectionVerdict:
    """What a cluster load's collection means for the verdict.

    ``unknown`` maps each tenant whose losses cannot be told to why; ``violations``
    are the run's (each incomplete worker, a missing or inconsistent status, each
    problem). Both empty for a local load or a complete collection.
    """

    unknown: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def _ranges(missing: Sequence[tuple[int, int]]) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in missing)


def worker_name(w: WorkerCollection) -> str:
    """``load worker 2 (id host-123)``, or ``(never connected)`` when the master never heard from it."""
    return f"load worker {w.index} ({'never connected' if w.worker is None else f'id {w.worker}'})"


def worker_gap(w: WorkerCollection) -> str | None:
    """What of this worker's journal did not arrive, in words; None when it all did.

    Judged from the figures themselves, not only the ``complete`` flag: a worker marked
    complete whose figures disagree is incomplete (fail closed).
    """
    parts: list[str] = []
    if w.final_batches is None:
        parts.append("no final message came (the worker died or was cut off before it finished)")
    if w.missing:
        parts.append(f"batch(es) {_ranges(w.missing)} never arrived")
    if w.final_batches is not None and w.batches != w.final_batches and not w.missing:
        parts.append(f"{w.batches} of the {w.final_batches} batches it sent arrived")
    if w.final_records is not None and w.records != w.final_records:
        parts.append(f"{w.records} of the {w.final_records} write records it sent arrived")
    if not parts and not w.complete:
        parts.append("the collection marks it incomplete")
    if not parts:
        return None
    if w.reason and not w.complete:
        return w.reason  # the master's own words; the figures agree it is incomplete
    return "; ".join([w.reason, *parts] if w.reason else parts)


def _tenants_text(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none named)"


def _status_doubt(load: LoadLife, collection: LoadCollection | None) -> str | None:
    """Why the collection status as a whole cannot be trusted, or None."""
    if collection is None:
        return "run.json has no collection status for the cluster load"
    expected = collection.expected_workers
    if expected < 1:
        return "the collection expects no worker"
    if load.workers is not None and load.workers != expected:
        return f"the load ran {load.workers} worker(s) but the collection expected {expected}"
    indexes = sorted(w.index for w in collection.workers)
    if indexes != list(range(expected)):
        return f"the collection lists worker(s) {indexes or 'none'}, not each of the {expected} expected once"
    return None


def collection_verdict(load: LoadLife | None, tenants: Sequence[str]) -> CollectionVerdict:
    """Which tenants' losses cannot be told because a cluster load's journal is incomplete.

    A local load (``mode`` ``local``) gives an empty verdict: its journal is written
    in the run folder directly.
    """
    if load is None or load.mode != "cluster":
        return CollectionVerdict()
    verdict = CollectionVerdict(violations=[f"cluster load: {p}" for p in load.problems])
    everyone = list(tenants)
    doubt = _status_doubt(load, load.collection)
    collection = load.collection
    if doubt is None and collection is not None:
        gaps = [(w, gap) for w in collection.workers if (gap := worker_gap(w)) is not None]
        if not collection.complete and not gaps:
            doubt = "the collection is marked incomplete but names no incomplete worker"
        for w, gap in gaps:
            if not w.tenants:
                doubt = f"{worker_name(w)} is incomplete and names no tenants"
                break
            reason = f"the journal of {worker_name(w)} is incomplete: {gap}"
            verdict.violations.append(
                f"{reason}; cannot tell whether tenant(s) {_tenants_text(w.tenants)} lost acknowledged writes"
            )
            for tenant in w.tenants:
                verdict.unknown[tenant] = (
                    f"{verdict.unknown[tenant]}; {reason}" if tenant in verdict.unknown else reason
                )
    if doubt is not None:
        reason = f"{doubt}: cannot tell whether every worker's journal arrived"
        verdict.violations.append(f"cluster load: {reason}; no tenant's losses can be judged")
        verdict.unknown.clear()
        verdict.unknown.update(dict.fromkeys(everyone, reason))
    return verdict
