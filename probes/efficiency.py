"""How much of the offered load the servers acknowledged: acks/s ÷ offered writes/s.

- **Window**: from the load's first write attempt (its scheduled time when journaled;
  with no record at all, the load process's start, ``run.json`` ``load.started_at``) to
  the moment the load was asked to stop (``load.stop_requested_at``; else the last
  journal record's end). Starting at the first attempt, not at the process start, keeps
  the interpreter's own start-up (about a second of imports) out of the measure; a
  tenant that never wrote still counts as offered for the whole window.
- **Offered**: tenants times ``write_rate`` (writes per second per tenant) times the window.
- **Acked**: acknowledged (``ok``) writes whose ``end`` lies in the window.
- **Efficiency**: acked ÷ offered. Connection set-up and any outage
  inside the window count against it: it says how much of what was asked for was
  delivered, whatever the reason.

Unknown is None, never 0: without a write rate (unpaced load) nothing was offered at
a known rate, so ``offered_per_second`` and ``efficiency`` are None; without a window
(no load times and no journal record, or an empty window) every rate is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from loadgen.journal import Write
from probes.model import LoadLife

__all__ = ["Efficiency", "run_efficiency"]


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


def run_efficiency(
    writes: Iterable[Write], tenants: int, write_rate: float | None, load: LoadLife | None = None
) -> Efficiency:
    """Acks/s ÷ offered writes/s over the load's window (see the module doc)."""
    attempts = list(writes)
    rate = write_rate if write_rate is not None and write_rate > 0 else None
    lo, hi = _window(attempts, load)
    if lo is None or hi is None or hi <= lo:
        return Efficiency(None, None, None, None, None, None, tenants, rate)
    window = hi - lo
    acked = sum(1 for w in attempts if w.outcome == "ok" and lo <= w.end <= hi)
    offered = tenants * rate * window if rate is not None and tenants > 0 else None
    return Efficiency(
        window_seconds=window,
        offered_per_second=None if offered is None else offered / window,
        acked_per_second=acked / window,
        efficiency=None if offered is None else acked / offered,
        acked_writes=acked,
        offered_writes=offered,
        tenants=tenants,
        write_rate=rate,
    )
