"""What a run's analysis produces: the data model the reports are made from.

Times named ``*_at`` are wall-clock seconds since the epoch, UTC; durations are seconds.
A value the harness cannot know is ``None`` with a ``note`` saying why, never a guess:
a tenant that never recovered has ``rto_seconds = None`` and ``recovered = False``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = [
    "Fault",
    "FaultResult",
    "LoadCollection",
    "LoadLife",
    "Objective",
    "Range",
    "ReadBack",
    "RunAnalysis",
    "RunContext",
    "TenantResult",
    "TenantTotals",
    "WorkerCollection",
]


@dataclass(frozen=True)
class Objective:
    """The targets a run is judged against (the checklist's 1-minute RTO, zero data loss)."""

    rto_seconds: float = 60.0
    rpo_seconds: float = 0.0


@dataclass(frozen=True)
class Fault:
    """One injected fault, as recorded by whoever injected it (``faults.jsonl``).

    ``target`` is the tenant it was aimed at (None for faults aimed at no one tenant,
    such as an operator restart). ``ended_at`` is when the injection itself finished
    (thaw, restart issued), if it has an end.
    """

    name: str
    kind: str
    injected_at: float
    target: str | None = None
    ended_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


Range = tuple[int, int, int]
"""Present keys ``(writer, first_seq, last_seq)``, both ends included."""


@dataclass(frozen=True)
class ReadBack:
    """Every row of one tenant found after the run, as ranges of ``(writer, seq)`` keys.

    ``ranges`` are sorted, non-overlapping, inclusive ``(writer, first_seq, last_seq)``
    (adjacent ones are merged on construction, so equal key sets compare equal): a run's
    rows are numbered without gaps per writer, so this is a handful of ranges where a
    dict would hold every row. ``error`` is set (and ``ranges`` empty) when the tenant
    could not be read: then the lost-write count is unknown, not zero.
    """

    tenant: str
    ranges: tuple[Range, ...]
    read_at: float
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", _canonical(self.ranges))

    @classmethod
    def of_keys(
        cls, tenant: str, keys: Iterable[tuple[int, int]], read_at: float, error: str | None = None
    ) -> ReadBack:
        """A read-back holding exactly ``keys`` (any order, duplicates allowed)."""
        return cls(tenant, tuple((w, s, s) for w, s in sorted(set(keys))), read_at, error)

    def contains(self, writer: int, seq: int) -> bool:
        """True if row ``(writer, seq)`` was found (binary search over the ranges)."""
        i = bisect_right(self.ranges, (writer, seq, math.inf)) - 1
        if i < 0:
            return False
        w, _, last = self.ranges[i]
        return w == writer and seq <= last

    @cached_property
    def count(self) -> int:
        """How many rows were found."""
        return sum(last - first + 1 for _, first, last in self.ranges)


def _canonical(ranges: Iterable[Sequence[int]]) -> tuple[Range, ...]:
    """``ranges`` checked (sorted, non-overlapping, ``first <= last``) with adjacent ones merged."""
    out: list[Range] = []
    for item in ranges:
        if len(item) != 3 or not all(type(v) is int for v in item):
            raise ValueError(f"read-back range {item!r} is not [writer, first_seq, last_seq] of integers")
        writer, first, last = item
        if first > last:
            raise ValueError(f"read-back range {item!r} ends before it starts")
        if out:
            w, f, prev_last = out[-1]
            if (writer, first) <= (w, prev_last):
                raise ValueError(
                    f"read-back range {item!r} overlaps or precedes {out[-1]!r}: ranges must be sorted"
                )
            if writer == w and first == prev_last + 1:
                out[-1] = (w, f, last)
                continue
        out.append((writer, first, last))
    return tuple(out)


@dataclass(frozen=True)
class WorkerCollection:
    """One load worker's journal as the Locust master collected it (cluster load).

    ``worker`` is its Locust client id (None: the master never heard from it);
    ``tenants`` the tenants its users wrote; ``batches`` how many journal batches
    arrived and ``missing`` the ``(lo, hi)`` batch ranges that did not (inclusive);
    ``records`` the write records received. ``final_batches`` / ``final_records`` are
    what the worker said it sent in its final message (None: no final message came).
    ``reason`` is the harness's word on why it is incomplete, if it has one.
    """

    index: int
    worker: str | None
    tenants: tuple[str, ...] = ()
    batches: int = 0
    missing: tuple[tuple[int, int], ...] = ()
    records: int = 0
    final_batches: int | None = None
    final_records: int | None = None
    complete: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class LoadCollection:
    """Whether every load worker's journal reached the master (``run.json`` ``load.collection``).

    ``complete`` is the harness's overall word; the analysis trusts it only when every
    expected worker is listed and each one's own figures are complete too.
    """

    expected_workers: int
    complete: bool
    workers: tuple[WorkerCollection, ...] = ()


@dataclass(frozen=True)
class LoadLife:
    """How the load process lived, as its supervisor saw it (``run.json``'s ``load`` block).

    ``died_at`` is set when it exited before anyone asked it to stop; ``exit_code`` is
    its exit status (negative: killed by that signal). The journal can only be
    complete up to ``stop_requested_at``; records must cover every tenant until then.

    ``mode`` is ``local`` (one Locust process beside the harness) or ``cluster`` (a
    Locust master and ``workers`` worker pods). A cluster load's journal is only as
    complete as its ``collection`` says (None: unknown, so nothing can be trusted);
    ``problems`` are what went wrong with it as a whole (the master was lost, ...).
    """

    started_at: float | None = None
    stop_requested_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    died_at: float | None = None
    mode: str = "local"
    workers: int | None = None
    collection: LoadCollection | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunContext:
    """What the orchestrator knows about the run beside the journal.

    ``chaos_status`` is Chaos Toolkit's (``completed``, ``failed``, ``aborted``,
    ``interrupted``; ``running`` when the orchestrator never finished; None outside
    Chaos Toolkit). ``failed_activities`` are ``"name: reason"`` of method activities
    and rollbacks that failed. ``write_rate`` is the offered writes per second per
    tenant, which sets how long a tenant may go without journal records.
    """

    chaos_status: str | None = None
    failed_activities: tuple[str, ...] = ()
    load: LoadLife | None = None
    write_rate: float | None = None


@dataclass
class TenantResult:
    """How one tenant lived through one fault.

    ``loss_window_from_seconds`` / ``loss_window_to_seconds`` are the earliest and latest
    lost acknowledged writes relative to the fault (negative: before it); ``rpo_seconds``
    is how far before the fault the loss reaches (0 when it starts after it).
    """

    tenant: str
    affected: bool
    recovered: bool
    rto_seconds: float | None
    max_ack_gap_seconds: float | None
    gap_open: bool
    acked_writes: int
    failed_writes: int
    unknown_writes: int
    lost_acked_writes: int | None
    rpo_seconds: float | None
    first_failure_at: float | None = None
    recovered_at: float | None = None
    note: str | None = None
    loss_window_from_seconds: float | None = None
    loss_window_to_seconds: float | None = None


@dataclass
class FaultResult:
    fault: Fault
    results: list[TenantResult]


@dataclass
class TenantTotals:
    """Whole-run counts for one tenant, from the journal and the read-back.

    ``journal_incomplete`` says why part of this tenant's journal never arrived (a
    cluster load's worker that died or lost batches): then ``lost``, ``unexpected`` and
    ``recovered_unknown`` are None, cannot tell, as after a failed read-back.
    ``misclassified`` counts writes journaled ``fail`` ("cannot have happened") whose row
    was found anyway; ``measurement_gaps`` are ``(from, to)`` stretches with no journal
    record that no fault explains: the harness cannot tell what happened then.
    """

    tenant: str
    attempts: int
    acked: int
    failed: int
    unknown: int
    lost: int | None
    unexpected: int | None
    recovered_unknown: int | None
    clock_skew_seconds: float | None
    lost_keys: list[tuple[int, int]] = field(default_factory=list)
    readback_error: str | None = None
    misclassified: int | None = None
    measurement_gaps: list[tuple[float, float]] = field(default_factory=list)
    journal_incomplete: str | None = None


@dataclass
class RunAnalysis:
    run_id: str
    objective: Objective
    stability_seconds: float
    tenants: list[str]
    faults: list[FaultResult]
    totals: list[TenantTotals]
    verdict: str
    violations: list[str]
    started_at: float | None = None
    ended_at: float | None = None
    load: LoadLife | None = None
