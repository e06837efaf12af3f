"""Per-tenant RTO and RPO from the acknowledged-write journal, the fault log and the read-back.

``analyze`` is a pure function (no I/O, no clock): the same inputs give the same
:class:`~probes.model.RunAnalysis`, so a run can be re-analysed at any time.

Definitions (per tenant; an *ack* is a write with outcome ``ok``, timed at its ``end``):

- **RTO** of fault F: ``A.end - F`` for the first ack ``A`` at or after F after which
  writes keep succeeding for ``stability`` seconds: every attempt overlapping
  ``(A.end, A.end + stability)`` is ``ok`` (a hung call that ends ``info`` after the
  window still breaks it), and some ack ends at or after ``A.end + stability`` (else the
  run ended too soon to tell). No such ack: ``recovered=False``, ``rto_seconds=None``
  and a note says why. Flapping gives the start of the final stable run.
- **Largest ack gap**: the largest interval between consecutive acks from the last ack
  before F to ``recovered_at + stability``; when not recovered, up to the tenant's last
  attempt, and ``gap_open`` says the gap was still open then.
- **Affected**: a non-ok attempt ended after F and before recovery, or the largest gap
  exceeds ``max(1 s, 3 x`` the tenant's median inter-ack interval before F``)``.
- **Counts** per (fault, tenant): attempts that ended in ``[F, next fault)``.
- **RPO** (Jepsen's set checker): lost = acked keys missing from the read-back,
  unexpected = present keys never attempted (the rows found less the attempted keys among
  them: the read-back holds ranges of keys), recovered unknown = ``info`` keys present.
  Each lost ack is blamed on the first fault injected at or after its end (after the last
  fault: the last fault); ``rpo_seconds = F - earliest blamed lost ack``, at least 0.
  A tenant whose read-back failed has every RPO figure ``None``: unknown, not zero; so has a
  tenant of a cluster load's worker whose journal did not fully arrive (:mod:`probes.trust`).
  The loss window is reported on both sides of the fault: earliest and latest lost
  ack relative to it.
- **Misclassified**: writes journaled ``fail`` whose row is in the read-back. ``fail``
  means "cannot have happened", so the classification was wrong and the counts built
  on it cannot be trusted.
- **Measurement gaps** and the run's own story (the load's life, Chaos Toolkit's status,
  faults never ended): :mod:`probes.trust`.
- **Verdict**: ``NO-GO`` on any violation (not recovered, RTO over the objective, lost
  acks beyond the RPO objective, unexpected rows, misclassified writes, a read-back
  that failed, a tenant that wrote nothing, a measurement gap, a load process that died
  or exited non-zero, a fault whose injection never completed, an experiment that did
  not complete, a failed activity), else ``GO``. A run without faults can be ``GO``.

Tenants found in the journal but missing from ``tenants`` are analysed too (appended,
sorted), so no journaled write is ignored.
"""

from __future__ import annotations

import itertools
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence, Sized
from dataclasses import dataclass, replace

from loadgen.journal import ClockSample, Write
from probes.model import (
    Fault,
    FaultResult,
    LoadLife,
    Objective,
    ReadBack,
    RunAnalysis,
    RunContext,
    TenantResult,
    TenantTotals,
)
from probes.trust import clock_text, collection_verdict, gap_limit, measurement_gaps, run_violations

__all__ = ["LOST_KEYS_KEPT", "analyze", "gap_limit", "run_analysis"]


LOST_KEYS_KEPT = 1000
"""At most this many lost keys are listed per tenant (the count is always complete)."""

NO_WRITES = "no writes journaled for this tenant"
NO_ACK_AFTER = "no acknowledged write after the fault"


@dataclass(frozen=True)
class _Timeline:
    """One tenant's attempts, indexed for the window queries below."""

    ends: list[float]  # every attempt's end, ascending
    by_end: list[Write]  # the attempts in that order
    ack_ends: list[float]  # ends of ok attempts, ascending
    bad_ends: list[float]  # ends of fail/info attempts, ascending
    bad_min_start: list[float]  # min start of bad attempts [i:], per i
    bad_min_index: list[int]  # where that minimum is, per i

    @classmethod
    def of(cls, writes: Sequence[Write]) -> _Timeline:
        by_end = sorted(writes, key=lambda w: (w.end, w.start, w.writer, w.seq))
        bad = [w for w in by_end if w.outcome != "ok"]
        min_start, min_index = _suffix_min([w.start for w in bad])
        return cls(
            ends=[w.end for w in by_end],
            by_end=by_end,
            ack_ends=[w.end for w in by_end if w.outcome == "ok"],
            bad_ends=[w.end for w in bad],
            bad_min_start=min_start,
            bad_min_index=min_index,
        )

    @property
    def last_end(self) -> float | None:
        return self.ends[-1] if self.ends else None

    def recovery(self, fault_at: float, stability: float) -> tuple[float | None, str | None]:
        """``(recovered_at, None)`` or ``(None, why not)``."""
        i = bisect_left(self.ack_ends, fault_at)
        if i == len(self.ack_ends):
            return None, NO_ACK_AFTER
        last_ack = self.ack_ends[-1]
        while i < len(self.ack_ends):
            ack = self.ack_ends[i]
            horizon = ack + stability
            if last_ack < horizon:
                break  # no later candidate can be confirmed either
            j = bisect_right(self.bad_ends, ack)  # bad attempts ending after this ack
            if j < len(self.bad_ends) and self.bad_min_start[j] < horizon:
                # That bad attempt overlaps the window of every ack ending before it does.
                breaker_end = self.bad_ends[self.bad_min_index[j]]
                i = max(i + 1, bisect_left(self.ack_ends, breaker_end))
                continue
            return ack, None
        return None, f"writes did not stay healthy for {stability:g}s before the run ended"

    def count(self, lo: float, hi: float | None) -> tuple[int, int, int]:
        """``(ok, fail, info)`` attempts that ended in ``[lo, hi)`` (``hi=None``: to the end)."""
        a = bisect_left(self.ends, lo)
        b = len(self.ends) if hi is None else bisect_left(self.ends, hi)
        outcomes = [w.outcome for w in self.by_end[a:b]]
        return outcomes.count("ok"), outcomes.count("fail"), outcomes.count("info")

    def baseline(self, fault_at: float) -> float:
        """The median interval between consecutive acks that ended before ``fault_at`` (0: fewer than 2)."""
        return _median_interval(self.ack_ends[: bisect_left(self.ack_ends, fault_at)])


def _suffix_min(starts: Sequence[float]) -> tuple[list[float], list[int]]:
    """Per ``i``, the smallest of ``starts[i:]`` and its index (the last one on ties)."""
    min_start: list[float] = [0.0] * len(starts)
    min_index: list[int] = [0] * len(starts)
    for i in range(len(starts) - 1, -1, -1):
        if i == len(starts) - 1 or starts[i] < min_start[i + 1]:
            min_start[i], min_index[i] = starts[i], i
        else:
            min_start[i], min_index[i] = min_start[i + 1], min_index[i + 1]
    return min_start, min_index


def _median_interval(ends: Sequence[float]) -> float:
    if len(ends) < 2:
        return 0.0
    return statistics.median(b - a for a, b in itertools.pairwise(ends))


def _gap(
    tl: _Timeline, fault_at: float, recovered_at: float | None, stability: float
) -> tuple[float | None, bool]:
    """``(max_ack_gap_seconds, gap_open)`` for one fault."""
    lo = max(bisect_left(tl.ack_ends, fault_at) - 1, 0)  # the last ack before the fault, if any
    end = len(tl.ack_ends) if recovered_at is None else bisect_right(tl.ack_ends, recovered_at + stability)
    window = tl.ack_ends[lo:end]
    gaps = [b - a for a, b in itertools.pairwise(window)]
    gap_open = False
    if recovered_at is None and tl.last_end is not None:
        anchor = window[-1] if window else fault_at
        if tl.last_end > anchor:
            gaps.append(tl.last_end - anchor)
            gap_open = True
    return (max(gaps) if gaps else None), gap_open


@dataclass(frozen=True)
class _Rpo:
    """One tenant's read-back verdict; ``lost`` holds the lost acks themselves."""

    lost: list[Write] | None
    unexpected: int | None
    recovered_unknown: int | None
    error: str | None
    misclassified: int | None = None
    incomplete: str | None = None  # why part of the tenant's journal never arrived


def _cannot_tell(rpo: _Rpo, incomplete: str | None) -> _Rpo:
    """With part of the journal missing, lost and unexpected rows cannot be told apart from it."""
    if incomplete is None:
        return rpo
    return replace(rpo, lost=None, unexpected=None, recovered_unknown=None, incomplete=incomplete)


def _rpo(writes: Sequence[Write], readback: ReadBack | None) -> _Rpo:
    if readback is None:
        return _Rpo(None, None, None, "no read-back was taken for this tenant")
    if readback.error is not None:
        return _Rpo(None, None, None, readback.error)
    present = readback.contains
    acked: dict[tuple[int, int], Write] = {}
    unknown: set[tuple[int, int]] = set()
    failed: set[tuple[int, int]] = set()
    for w in writes:
        if w.outcome == "ok":
            acked.setdefault(w.key, w)
        elif w.outcome == "info":
            unknown.add(w.key)
        else:
            failed.add(w.key)
    attempted = {w.key for w in writes}
    lost = sorted((w for k, w in acked.items() if not present(*k)), key=lambda w: (w.end, w.key))
    unexpected = readback.count - sum(1 for k in attempted if present(*k))
    recovered_unknown = sum(1 for k in unknown - acked.keys() if present(*k))
    misclassified = sum(1 for k in failed - acked.keys() - unknown if present(*k))
    return _Rpo(lost, unexpected, recovered_unknown, None, misclassified)


def _blame(lost: Sequence[Write], faults: Sequence[Fault]) -> list[list[Write]]:
    """Lost acks per fault: the first fault injected at or after the ack, else the last."""
    blamed: list[list[Write]] = [[] for _ in faults]
    if not faults:
        return blamed
    times = [f.injected_at for f in faults]
    for w in lost:
        blamed[min(bisect_left(times, w.end), len(faults) - 1)].append(w)
    return blamed


def _no_writes_result(tenant: str, rpo: _Rpo, lost: Sized) -> TenantResult:
    return TenantResult(
        tenant=tenant,
        affected=True,
        recovered=False,
        rto_seconds=None,
        max_ack_gap_seconds=None,
        gap_open=False,
        acked_writes=0,
        failed_writes=0,
        unknown_writes=0,
        lost_acked_writes=None if rpo.lost is None else len(lost),
        rpo_seconds=None if rpo.lost is None else 0.0,
        note=NO_WRITES,
    )


def _tenant_result(
    *,
    tenant: str,
    tl: _Timeline,
    fault: Fault,
    next_at: float | None,
    rpo: _Rpo,
    blamed: Sequence[float],
    stability: float,
) -> TenantResult:
    """How ``tenant`` lived through ``fault``; ``blamed`` are the ends of the lost acks blamed on it."""
    if not tl.ends:
        return _no_writes_result(tenant, rpo, blamed)
    f_at = fault.injected_at
    recovered_at, note = tl.recovery(f_at, stability)
    max_gap, gap_open = _gap(tl, f_at, recovered_at, stability)

    j = bisect_left(tl.bad_ends, f_at)
    first_failure_at = tl.bad_ends[j] if j < len(tl.bad_ends) else None
    failed_before_recovery = first_failure_at is not None and (
        recovered_at is None or first_failure_at < recovered_at
    )
    baseline = tl.baseline(f_at)
    slow = max_gap is not None and max_gap > max(1.0, 3.0 * baseline)

    ok, fail, info = tl.count(f_at, next_at)
    window: tuple[float | None, float | None] = (None, None)
    if rpo.lost is None:
        lost_count: int | None = None
        rpo_seconds: float | None = None
    else:
        lost_count = len(blamed)
        rpo_seconds = max(0.0, f_at - min(blamed)) if blamed else 0.0
        if blamed:
            window = (min(blamed) - f_at, max(blamed) - f_at)
    return TenantResult(
        tenant=tenant,
        affected=failed_before_recovery or slow,
        recovered=recovered_at is not None,
        rto_seconds=None if recovered_at is None else recovered_at - f_at,
        max_ack_gap_seconds=max_gap,
        gap_open=gap_open,
        acked_writes=ok,
        failed_writes=fail,
        unknown_writes=info,
        lost_acked_writes=lost_count,
        rpo_seconds=rpo_seconds,
        first_failure_at=first_failure_at,
        recovered_at=recovered_at,
        note=note,
        loss_window_from_seconds=window[0],
        loss_window_to_seconds=window[1],
    )


def _totals(tenant: str, writes: Sequence[Write], clocks: Sequence[ClockSample], rpo: _Rpo) -> TenantTotals:
    skews = [c.skew for c in clocks if c.tenant == tenant]
    outcomes = [w.outcome for w in writes]
    return TenantTotals(
        tenant=tenant,
        attempts=len(writes),
        acked=outcomes.count("ok"),
        failed=outcomes.count("fail"),
        unknown=outcomes.count("info"),
        lost=None if rpo.lost is None else len(rpo.lost),
        unexpected=rpo.unexpected,
        recovered_unknown=rpo.recovered_unknown,
        clock_skew_seconds=statistics.median(skews) if skews else None,
        lost_keys=sorted(w.key for w in rpo.lost)[:LOST_KEYS_KEPT] if rpo.lost else [],
        readback_error=rpo.error,
        misclassified=rpo.misclassified,
        journal_incomplete=rpo.incomplete,
    )


def _pair_violations(fault: Fault, r: TenantResult, objective: Objective) -> list[str]:
    who = f"{fault.name} {r.tenant}"
    out: list[str] = []
    why = fault.details.get("explanation")  # what was seen after the injection (a lost node's handling)
    because = f"; {why}" if isinstance(why, str) and why else ""
    if not r.recovered:
        out.append(f"{who}: not recovered ({r.note}){because}")
    elif r.rto_seconds is not None and r.rto_seconds > objective.rto_seconds:
        out.append(
            f"{who}: RTO {r.rto_seconds:.1f}s exceeds the {objective.rto_seconds:g}s objective{because}"
        )
    if r.lost_acked_writes and r.rpo_seconds is not None:
        span = ""
        if r.loss_window_from_seconds is not None and r.loss_window_to_seconds is not None:
            span = (
                f", acknowledged from {r.loss_window_from_seconds:+.1f}s to "
                f"{r.loss_window_to_seconds:+.1f}s around the fault"
            )
        if objective.rpo_seconds <= 0:
            out.append(
                f"{who}: {r.lost_acked_writes} acknowledged write(s) lost "
                f"(loss window {r.rpo_seconds:.1f}s{span}); the objective is no data loss"
            )
        elif r.rpo_seconds > objective.rpo_seconds:
            out.append(
                f"{who}: RPO {r.rpo_seconds:.1f}s ({r.lost_acked_writes} acknowledged write(s) lost) "
                f"exceeds the {objective.rpo_seconds:g}s objective"
            )
    return out


def _tenant_violations(t: TenantTotals, any_fault: bool) -> list[str]:
    out: list[str] = []
    if t.readback_error is not None:
        out.append(f"{t.tenant}: cannot tell whether acknowledged writes were lost: {t.readback_error}")
    if t.unexpected:
        out.append(f"{t.tenant}: {t.unexpected} row(s) present that were never written")
    if t.misclassified:
        out.append(
            f"{t.tenant}: {t.misclassified} write(s) journaled as failed (cannot have happened) "
            "were found in the database: the outcome classification is wrong, so the counts cannot be trusted"
        )
    for lo, hi in t.measurement_gaps:
        out.append(
            f"{t.tenant}: measurement gap: no journal record for {hi - lo:.1f}s ({clock_text(lo)} to "
            f"{clock_text(hi)} UTC) that no fault explains: cannot tell what happened then"
        )
    if not any_fault:
        if t.attempts == 0:
            out.append(f"{t.tenant}: {NO_WRITES}")
        elif t.acked == 0:
            out.append(f"{t.tenant}: none of {t.attempts} write(s) was acknowledged")
        if t.lost:
            out.append(f"{t.tenant}: {t.lost} acknowledged write(s) lost with no fault injected")
    return out


def analyze(
    run_id: str,
    writes: list[Write],
    clocks: list[ClockSample],
    faults: list[Fault],
    readbacks: dict[str, ReadBack],
    tenants: list[str],
    objective: Objective = Objective(),  # noqa: B008 - frozen dataclass, safe as a default
    stability: float = 5.0,
    context: RunContext | None = None,
) -> RunAnalysis:
    """Judge one run: per (fault, tenant) RTO/RPO, per-tenant totals, the verdict and why.

    ``context`` (the load's life, Chaos Toolkit's status) adds the checks that need
    more than the journal; without it only the journal, faults and read-back count.
    """
    context = context or RunContext()
    names = list(dict.fromkeys(tenants))
    names += sorted({w.tenant for w in writes} - set(names))
    per_tenant: dict[str, list[Write]] = {t: [] for t in names}
    for w in writes:
        per_tenant[w.tenant].append(w)
    ordered = sorted(faults, key=lambda f: f.injected_at)

    timelines = {t: _Timeline.of(ws) for t, ws in per_tenant.items()}
    collected = collection_verdict(context.load, names)
    rpos = {t: _cannot_tell(_rpo(per_tenant[t], readbacks.get(t)), collected.unknown.get(t)) for t in names}
    blamed = {t: _blame(rpos[t].lost or [], ordered) for t in names}

    fault_results: list[FaultResult] = []
    violations: list[str] = run_violations(ordered, context) + collected.violations
    for i, fault in enumerate(ordered):
        next_at = ordered[i + 1].injected_at if i + 1 < len(ordered) else None
        results = [
            _tenant_result(
                tenant=t,
                tl=timelines[t],
                fault=fault,
                next_at=next_at,
                rpo=rpos[t],
                blamed=[w.end for w in blamed[t][i]],
                stability=stability,
            )
            for t in names
        ]
        fault_results.append(FaultResult(fault=fault, results=results))

    totals = [_totals(t, per_tenant[t], clocks, rpos[t]) for t in names]
    for t in totals:
        mine = [next(r for r in fr.results if r.tenant == t.tenant) for fr in fault_results]
        t.measurement_gaps = measurement_gaps(per_tenant[t.tenant], mine, ordered, context)
    span = (min((w.start for w in writes), default=None), max((w.end for w in writes), default=None))
    return run_analysis(
        run_id, objective, stability, names, fault_results, totals, violations, span, context.load
    )


def run_analysis(
    run_id: str,
    objective: Objective,
    stability: float,
    tenants: list[str],
    faults: list[FaultResult],
    totals: list[TenantTotals],
    violations: list[str],
    span: tuple[float | None, float | None],
    load: LoadLife | None,
) -> RunAnalysis:
    """The run's analysis from its judged faults and totals: ``violations`` (the run's own) plus each
    (fault, tenant) pair's and each tenant's, and the verdict. Shared by both analysis paths."""
    violations = list(violations)
    for fault_result in faults:
        for r in fault_result.results:
            violations += _pair_violations(fault_result.fault, r, objective)
    for t in totals:
        violations += _tenant_violations(t, bool(faults))
    return RunAnalysis(
        run_id=run_id,
        objective=objective,
        stability_seconds=stability,
        tenants=tenants,
        faults=faults,
        totals=totals,
        verdict="NO-GO" if violations else "GO",
        violations=violations,
        started_at=span[0],
        ended_at=span[1],
        load=load,
    )
