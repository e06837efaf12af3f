"""One tenant of the columnar analysis: its attempts as arrays, judged by :mod:`probes.analysis`'s own code.

:func:`judge_tenant` gives exactly what :func:`probes.analysis.analyze` gives for one
tenant: its result per fault and its totals. The RTO and ack-gap logic is analysis's
own (``_Timeline.recovery``, ``_gap``, ``_tenant_result``), run on a timeline built from
sorted arrays; only what would cost Python time per attempt is done with numpy, to the
same arithmetic:

- per-fault counts: ends of each outcome, sorted, counted in ``[F, next fault)``;
- the median interval between acks before a fault: the differences of consecutive
  sorted ack ends, their middle element(s) found by partitioning, averaged as
  :func:`statistics.median` averages them;
- the read-back: keys ``(writer, seq)`` as one order-preserving integer, deduplicated
  by sorting, looked up among the read-back's ranges by binary search (lost, unexpected,
  recovered unknown, misclassified as :func:`probes.analysis._rpo` defines them; a key
  acknowledged twice is timed by its earliest-starting ``ok`` attempt);
- coverage gaps: attempts sorted by start, a running maximum of their ends.

Memory is this tenant's attempts (about 150 bytes each while judged, Python lists of
the ends included), not the journal's.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from loadgen.journal import ClockSample
from probes.analysis import (  # analysis's own pieces, so both paths judge alike
    LOST_KEYS_KEPT,
    _cannot_tell,
    _Rpo,
    _rpo,
    _suffix_min,
    _tenant_result,
    _Timeline,
)
from probes.columnar_arrays import TenantArrays
from probes.errors import ProbeError
from probes.model import Fault, ReadBack, RunContext, TenantResult, TenantTotals
from probes.trust import gap_limit, load_until, unexplained_gaps

__all__ = ["ArrayTimeline", "TenantJudgement", "coverage_gaps", "judge_tenant"]

OK, FAIL, INFO = 0, 1, 2


@dataclass(frozen=True, eq=False)
class ArrayTimeline(_Timeline):
    """:class:`probes.analysis._Timeline` built from arrays; counts and baselines with numpy."""

    ok_ends: np.ndarray  # ends of each outcome, ascending
    fail_ends: np.ndarray
    info_ends: np.ndarray
    ack_gaps: np.ndarray  # differences of consecutive ack ends

    @classmethod
    def of_arrays(cls, a: TenantArrays) -> ArrayTimeline:
        order = np.argsort(a.end, kind="stable")
        ends, outcome, starts = a.end[order], a.outcome[order], a.start[order]
        bad = outcome != OK
        acks = ends[~bad]
        min_start, min_index = _suffix_min(starts[bad].tolist())
        return cls(
            ends=ends.tolist(),
            by_end=[],
            ack_ends=acks.tolist(),
            bad_ends=ends[bad].tolist(),
            bad_min_start=min_start,
            bad_min_index=min_index,
            ok_ends=acks,
            fail_ends=ends[outcome == FAIL],
            info_ends=ends[outcome == INFO],
            ack_gaps=np.diff(acks),
        )

    def count(self, lo: float, hi: float | None) -> tuple[int, int, int]:
        def between(ends: np.ndarray) -> int:
            a = int(np.searchsorted(ends, lo, "left"))
            b = len(ends) if hi is None else int(np.searchsorted(ends, hi, "left"))
            return max(b - a, 0)

        return between(self.ok_ends), between(self.fail_ends), between(self.info_ends)

    def baseline(self, fault_at: float) -> float:
        k = int(np.searchsorted(self.ok_ends, fault_at, "left"))
        if k < 2:
            return 0.0
        gaps = self.ack_gaps[: k - 1]
        n = len(gaps)
        if n % 2:
            return float(np.partition(gaps, n // 2)[n // 2])
        lo, hi = np.partition(gaps, (n // 2 - 1, n // 2))[n // 2 - 1 : n // 2 + 1]
        return (float(lo) + float(hi)) / 2


@dataclass(frozen=True)
class _Keys:
    """``(writer, seq)`` pairs as single int64 values that sort as the pairs do."""

    writers: np.ndarray  # the distinct writers, ascending
    seq_min: int
    span: int

    @classmethod
    def over(cls, writer: np.ndarray, seq: np.ndarray, ranges: Sequence[tuple[int, int, int]]) -> _Keys:
        writers = np.unique(np.concatenate([writer, np.array([r[0] for r in ranges], np.int64)]))
        lows = [int(seq.min())] if len(seq) else []
        highs = [int(seq.max())] if len(seq) else []
        lows += [r[1] for r in ranges]
        highs += [r[2] for r in ranges]
        seq_min = min(lows, default=0)
        span = max(highs, default=0) - seq_min + 1
        if max(len(writers), 1) * span >= 2**62:
            raise ProbeError(
                "sequence numbers span more than the columnar analysis can key "
                f"({len(writers)} writers x {span} numbers); analyse this run with probes.analysis.analyze"
            )
        return cls(writers, seq_min, span)

    def of(self, writer: np.ndarray, seq: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.writers, writer).astype(np.int64) * self.span + (seq - self.seq_min)

    def pairs(self, keys: np.ndarray) -> list[tuple[int, int]]:
        writers = self.writers[keys // self.span]
        seqs = keys % self.span + self.seq_min
        return [(int(w), int(s)) for w, s in zip(writers, seqs, strict=True)]


@dataclass(frozen=True)
class _Loss:
    """One tenant's read-back verdict: analysis's ``_Rpo`` and its lost acks as arrays.

    ``rpo.lost`` is an empty list standing for "known" (None: cannot tell): the lost
    acks are ``ends`` (ascending, ties by key) and ``keys`` (the first ones by key).
    """

    rpo: _Rpo
    count: int = 0
    ends: np.ndarray = field(default_factory=lambda: np.empty(0))
    keys: list[tuple[int, int]] = field(default_factory=list)


def _present(keys: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Which of ``keys`` lie in one of the ranges ``[first, last]`` (sorted, disjoint)."""
    if not len(first):
        return np.zeros(len(keys), bool)
    i = np.searchsorted(first, keys, "right") - 1
    return (i >= 0) & (keys <= last[np.maximum(i, 0)])


def _loss(a: TenantArrays, readback: ReadBack | None) -> _Loss:
    if readback is None or readback.error is not None:
        return _Loss(_rpo([], readback))  # no usable read-back: analysis's own words
    ranges = readback.ranges
    keyer = _Keys.over(a.writer, a.seq, ranges)
    first = keyer.of(np.array([r[0] for r in ranges], np.int64), np.array([r[1] for r in ranges], np.int64))
    last = keyer.of(np.array([r[0] for r in ranges], np.int64), np.array([r[2] for r in ranges], np.int64))
    keys = keyer.of(a.writer, a.seq)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = (
        np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(keys) else np.empty(0, int)
    )
    distinct = sorted_keys[starts]
    flags = np.empty(0, np.uint8)
    if len(keys):
        flags = np.bitwise_or.reduceat((1 << a.outcome[order]).astype(np.uint8), starts)
    present = _present(distinct, first, last)
    acked, failed, unknown = (flags & (1 << OK)) > 0, (flags & (1 << FAIL)) > 0, (flags & (1 << INFO)) > 0
    lost_keys = distinct[acked & ~present]
    ends = _first_ok_ends(a, keys, lost_keys)
    by_end = np.lexsort((lost_keys, ends))
    rpo = _Rpo(
        lost=[],
        unexpected=readback.count - int(present.sum()),
        recovered_unknown=int((present & unknown & ~acked).sum()),
        error=None,
        misclassified=int((present & failed & ~acked & ~unknown).sum()),
    )
    return _Loss(rpo, len(lost_keys), ends[by_end], keyer.pairs(lost_keys[:LOST_KEYS_KEPT]))


def _first_ok_ends(a: TenantArrays, keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each of ``wanted`` (ascending keys), the end of its earliest-starting ``ok`` attempt."""
    if not len(wanted):
        return np.empty(0)
    rows = np.flatnonzero((a.outcome == OK) & np.isin(keys, wanted))
    order = np.lexsort((a.end[rows], a.start[rows], keys[rows]))
    rows = rows[order]
    ks = keys[rows]
    first = np.r_[True, ks[1:] != ks[:-1]]
    return a.end[rows[first]]


def coverage_gaps(a: TenantArrays, until: float | None, limit: float) -> list[tuple[float, float]]:
    """:func:`probes.trust._coverage_gaps` on arrays: stretches longer than ``limit`` no attempt covers."""
    if not len(a):
        return []
    # The reader's order (start, writer, seq); ties cannot change the answer when no attempt
    # ends before it starts, so then the start alone will do.
    ordered = bool(np.all(a.end >= a.start))
    order = np.argsort(a.start) if ordered else np.lexsort((a.seq, a.writer, a.start))
    starts = a.start[order]
    covered = np.maximum.accumulate(a.end[order])
    holes = np.flatnonzero(starts[1:] - covered[:-1] > limit)
    gaps = [(float(covered[i]), float(starts[i + 1])) for i in holes]
    if until is not None and until - covered[-1] > limit:
        gaps.append((float(covered[-1]), until))
    return gaps


@dataclass(frozen=True)
class TenantJudgement:
    """One tenant's results (one per fault, in fault order), its totals and its time span."""

    results: list[TenantResult]
    totals: TenantTotals
    first_start: float | None
    last_end: float | None


def judge_tenant(
    a: TenantArrays,
    faults: Sequence[Fault],
    readback: ReadBack | None,
    incomplete: str | None,
    clocks: Sequence[ClockSample],
    stability: float,
    context: RunContext,
) -> TenantJudgement:
    """What :func:`probes.analysis.analyze` says of tenant ``a.tenant``; ``faults`` in injection order."""
    tl = ArrayTimeline.of_arrays(a)
    loss = _loss(a, readback)
    rpo = _cannot_tell(loss.rpo, incomplete)
    blame = np.minimum(np.searchsorted([f.injected_at for f in faults], loss.ends, "left"), len(faults) - 1)
    results = [
        _tenant_result(
            tenant=a.tenant,
            tl=tl,
            fault=fault,
            next_at=faults[i + 1].injected_at if i + 1 < len(faults) else None,
            rpo=rpo,
            blamed=loss.ends[blame == i].tolist(),
            stability=stability,
        )
        for i, fault in enumerate(faults)
    ]
    skews = [c.skew for c in clocks if c.tenant == a.tenant]
    totals = TenantTotals(
        tenant=a.tenant,
        attempts=len(a),
        acked=len(tl.ok_ends),
        failed=len(tl.fail_ends),
        unknown=len(tl.info_ends),
        lost=None if rpo.lost is None else loss.count,
        unexpected=rpo.unexpected,
        recovered_unknown=rpo.recovered_unknown,
        clock_skew_seconds=statistics.median(skews) if skews else None,
        lost_keys=loss.keys if rpo.lost is not None else [],
        readback_error=rpo.error,
        misclassified=rpo.misclassified,
        journal_incomplete=rpo.incomplete,
    )
    load = context.load
    if load is not None and len(a):
        limit = gap_limit(context.write_rate)
        totals.measurement_gaps = unexplained_gaps(
            coverage_gaps(a, load_until(load), limit), results, faults, limit
        )
    empty = not len(a)
    return TenantJudgement(
        results=results,
        totals=totals,
        first_start=None if empty else float(a.start.min()),
        last_end=None if empty else float(a.end.max()),
    )
