"""A soak round's view of the load: per tenant, what happened to the writes since the last round.

:class:`LoadWindow` is fed the write records a :class:`loadgen.journal.JournalTail`
returns and gives, per tenant, the acknowledged, failed and unknown-outcome attempts and
the p99 latency of the acknowledged ones since the previous :meth:`LoadWindow.take`.
Latency is counted from each write's scheduled time when the journal has it
(:func:`probes.latency.attempt_latency`, as the run's latency report counts it), in an
HDR histogram of 1 µs to 1 h with 3 significant digits (values in whole microseconds,
clamped into that range), read nearest-rank (:func:`probes.latency.histogram_stats`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loadgen.journal import Write
from probes.latency import (
    HIGHEST_MICROSECONDS,
    LOWEST_MICROSECONDS,
    attempt_latency,
    histogram_stats,
    new_histogram,
)

__all__ = ["LoadWindow"]


@dataclass
class _Tally:
    acks: int = 0
    fails: int = 0
    infos: int = 0
    histogram: Any = field(default_factory=new_histogram)

    def add(self, write: Write) -> None:
        if write.outcome == "ok":
            self.acks += 1
            seconds = attempt_latency(write)
            micros = round(seconds * 1_000_000) if math.isfinite(seconds) else HIGHEST_MICROSECONDS
            self.histogram.record_value(min(max(micros, LOWEST_MICROSECONDS), HIGHEST_MICROSECONDS))
        elif write.outcome == "fail":
            self.fails += 1
        else:
            self.infos += 1

    def as_dict(self) -> dict[str, Any]:
        p99 = histogram_stats(self.histogram)["p99_ms"] if self.acks else None
        return {"acks": self.acks, "fails": self.fails, "infos": self.infos, "p99_ms": p99}


class LoadWindow:
    """Per-tenant outcomes and p99 latency of the writes fed since the previous :meth:`take`.

    ``tenants`` always appear in a take, with zeros and ``p99_ms`` None when they wrote
    nothing in the window; other tenants appear when they wrote. Thread-safe.
    """

    def __init__(self, tenants: Iterable[str] = ()) -> None:
        self._named = list(dict.fromkeys(tenants))
        self._lock = threading.Lock()
        self._tallies: dict[str, _Tally] = {}

    def feed(self, writes: Iterable[Write]) -> None:
        """Count ``writes`` (as :meth:`loadgen.journal.JournalTail.poll` returns them) in this window."""
        with self._lock:
            for write in writes:
                tally = self._tallies.get(write.tenant)
                if tally is None:
                    tally = self._tallies[write.tenant] = _Tally()
                tally.add(write)

    def take(self) -> dict[str, dict[str, Any]]:
        """``{tenant: {"acks", "fails", "infos", "p99_ms"}}`` for the window, then start a new one."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        names = [*self._named, *sorted(t for t in tallies if t not in self._named)]
        quiet = {"acks": 0, "fails": 0, "infos": 0, "p99_ms": None}
        return {t: tallies[t].as_dict() if t in tallies else dict(quiet) for t in names}
