"""How much of the offered load the servers acknowledged: acks/s ÷ offered writes/s.

- **Window**: from the load's first write attempt (its scheduled time when journaled;
  with no record at all, the load process's start, ``run.json`` ``load.started_at``) to
  the moment the load was asked to stop (``load.stop_requested_at``; else the last
  journal record's end). Starting at the first attempt, not at the process start, keeps
  the interpreter's own start-up (about a second of imports) out of the measure; a
  tenant that never wrote still counts as offered for the whole window.
- **Offered**: ``write_rate`` (writes per second per tenant) times each tenant's time in
  the window outside its own outage windows (from a fault's injection to the tenant's
  recovery, :func:`probes.latency.outage_windows`), summed over the tenants.
- **Acked**: acknowledged (``ok``) writes whose ``end`` lies in the window and whose
  scheduled time (else start) lies outside the tenant's outage windows.
- **Efficiency**: acked ÷ offered. The injected fault's own outage is RTO's to judge,
  not efficiency's: counted here it would fail small tenant counts (one tenant down for
  30 s is a quarter of two tenants' load, an eighth of four's) and make capacity look
  worse the fewer tenants there are. Connection set-up and every slowdown outside the
  outage windows count against it.

Unknown is None, never 0: without a write rate (unpaced load) nothing was offered at
a known rate, so ``offered_per_second`` and ``efficiency`` are None; without a window
(no load times and no journal record, or an empty window) every rate is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from loadgen.journal import Write
from probes.model import LoadLife

__all__ = ["Efficiency", "efficiency_over", "overlap", "run_efficiency"]


@dataclass(frozen=True)
class Efficiency:
    """The run's delivered share of its offered load (see the module doc)."""

    window_seconds: float | None
    offered_per_second: float | None
    acked_per_second: float | None
    efficiency: float | None
    acked_writes: int | None
    offered_writes: float | None
    tenants: int
    write_rate: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _window(writes: Sequence[Write], load: LoadLife | None) -> tuple[float | None, float | None]:
    start = load.started_at if load is not None else None
    stop = load.stop_requested_at if load is not None else None
    if writes:
        first = min(w.start if w.due is None else min(w.due, w.start) for w in writes)
        start = first if start is None else max(start, first)
    if stop is None and writes:
        stop = max(w.end for w in writes)
    return start, stop


def overlap(lo: float, hi: float, windows: Sequence[tuple[float, float | None]]) -> float:
    """Seconds of ``[lo, hi]`` covered by ``windows`` (an open end runs to ``hi``)."""
    spans = sorted((max(lo, a), min(hi, hi if b is None else b)) for a, b in windows)
    covered, reach = 0.0, lo
    for a, b in spans:
        start = max(a, reach)
        if b > start:
            covered += b - start
            reach = b
    return covered


def run_efficiency(
    writes: Iterable[Write],
    tenants: int,
    write_rate: float | None,
    load: LoadLife | None = None,
    outages: Mapping[str, Sequence[tuple[float, float | None]]] | None = None,
) -> Efficiency:
    """Acks/s ÷ offered writes/s over the load's window, outage windows left out (see the module doc)."""
    attempts = list(writes)
    outages = outages or {}
    rate = write_rate if write_rate is not None and write_rate > 0 else None
    lo, hi = _window(attempts, load)
    if lo is None or hi is None or hi <= lo:
        return Efficiency(None, None, None, None, None, None, tenants, rate)

    def in_outage(w: Write) -> bool:
        at = w.start if w.due is None else w.due
        return any(a <= at and (b is None or at <= b) for a, b in outages.get(w.tenant, ()))

    acked = sum(1 for w in attempts if w.outcome == "ok" and lo <= w.end <= hi and not in_outage(w))
    return efficiency_over(lo, hi, acked, {w.tenant for w in attempts}, outages, tenants, rate)


def efficiency_over(
    lo: float,
    hi: float,
    acked: int,
    names: Iterable[str],
    outages: Mapping[str, Sequence[tuple[float, float | None]]],
    tenants: int,
    rate: float | None,
) -> Efficiency:
    """The efficiency of ``acked`` acks in the window ``[lo, hi]`` (``hi > lo``), the outages of
    ``names`` (and of every tenant in ``outages``) left out of the offered load."""
    window = hi - lo
    down = sum(
        overlap(lo, hi, outages.get(t, ())) for t in sorted(set(names) | set(outages))
    )  # one sum order
    offered = rate * (tenants * window - down) if rate is not None and tenants > 0 else None
    return Efficiency(
        window_seconds=window,
        offered_per_second=None if offered is None else offered / window,
        acked_per_second=acked / window,
        efficiency=None if offered is None or offered <= 0 else acked / offered,
        acked_writes=acked,
        offered_writes=offered,
        tenants=tenants,
        write_rate=rate,
    )
