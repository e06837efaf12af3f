"""A running journal as probes see it: read incrementally, judged per tenant.

Steady-state and recovery probes poll the journal every fraction of a second while the
load writes it. Re-reading the whole journal each time would cost O(run length) per
poll, so :class:`LiveJournal` keeps a tail per run folder and only the last few minutes
of attempts in memory.

:meth:`LiveJournal.health` is the load's liveness measured, not assumed: a tenant
whose newest acknowledged write is older than two write intervals (at least 1 s), or that
acknowledged fewer than half the writes it was offered in the window, is *stale*
(its success rate counts as 0), whatever share of its few recent writes succeeded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from loadgen.journal import JournalTail, Write

__all__ = ["LiveJournal", "TenantHealth", "freshness_limit", "live_journal", "run_facts"]

KEEP_SECONDS = 600.0


def freshness_limit(write_rate: float | None) -> float:
    """How old a tenant's newest acknowledged write may be: two write intervals, at least 1 s.

    The floor keeps a loaded 2-core machine's scheduling hiccups from reading as a dead
    tenant; a dead load process is caught directly, without waiting for staleness.
    """
    if not write_rate or write_rate <= 0:
        return 1.0
    return max(1.0, 2.0 / write_rate)


@dataclass(frozen=True)
class TenantHealth:
    """One tenant over the last window: attempts, acks, newest ack, and why it is stale."""

    tenant: str
    attempts: int
    acked: int
    newest_ack_age: float | None
    stale: str | None

    @property
    def success_rate(self) -> float:
        """Share of acknowledged attempts; 0 for a stale tenant (a quiet tenant is not healthy)."""
        if self.stale or not self.attempts:
            return 0.0
        return self.acked / self.attempts


class LiveJournal:
    """The attempts of one run folder's journal, refreshed incrementally."""

    def __init__(self, run_dir: Path, keep_seconds: float = KEEP_SECONDS) -> None:
        self.run_dir = Path(run_dir)
        self.keep_seconds = keep_seconds
        self._tail = JournalTail(self.run_dir / "journal")
        self._recent: list[Write] = []
        self.first_seen: dict[str, float] = {}
        self.last_ack: dict[str, float] = {}
        #: Per tenant, when its newest acknowledged write *started* (a write sent before a
        #: fault but answered after it says nothing about the server after the fault).
        self.last_ack_start: dict[str, float] = {}

    def refresh(self) -> None:
        """Read what was appended since the last refresh."""
        writes, _ = self._tail.poll()
        for w in writes:
            self.first_seen.setdefault(w.tenant, w.start)
            if w.outcome == "ok" and w.end > self.last_ack.get(w.tenant, float("-inf")):
                self.last_ack[w.tenant] = w.end
            if w.outcome == "ok" and w.start > self.last_ack_start.get(w.tenant, float("-inf")):
                self.last_ack_start[w.tenant] = w.start
        if writes:
            self._recent.extend(writes)
            horizon = max(w.end for w in writes) - self.keep_seconds
            if self._recent[0].end < horizon:
                self._recent = [w for w in self._recent if w.end >= horizon]

    def since(self, moment: float) -> list[Write]:
        """Attempts that ended at or after ``moment`` (within the kept history)."""
        return [w for w in self._recent if w.end >= moment]

    def health(
        self, tenants: list[str], window_seconds: float, write_rate: float | None, now: float | None = None
    ) -> list[TenantHealth]:
        """Each tenant's health over the last ``window_seconds`` (see the module docstring)."""
        self.refresh()
        now = time.time() if now is None else now
        recent = self.since(now - window_seconds)
        limit = freshness_limit(write_rate)
        out: list[TenantHealth] = []
        for tenant in tenants:
            mine = [w for w in recent if w.tenant == tenant]
            acked = sum(1 for w in mine if w.outcome == "ok")
            last = self.last_ack.get(tenant)
            age = None if last is None else max(0.0, now - last)
            stale = None
            if age is None:
                stale = "no acknowledged write yet"
            elif age > limit:
                stale = f"newest acknowledged write is {age:.1f}s old (limit {limit:.2f}s)"
            elif write_rate and write_rate > 0:
                span = min(window_seconds, max(0.0, now - self.first_seen.get(tenant, now)))
                expected = write_rate * span
                if acked < expected / 2:
                    stale = f"{acked} acknowledged write(s) in {span:.1f}s, expected about {expected:.0f}"
            out.append(TenantHealth(tenant, len(mine), acked, age, stale))
        return out


_journals: dict[Path, LiveJournal] = {}


def live_journal(run_dir: Path) -> LiveJournal:
    """The (cached) live journal of ``run_dir``; one per run folder per process."""
    key = Path(run_dir).resolve()
    if key not in _journals:
        _journals[key] = LiveJournal(key)
    return _journals[key]


def run_facts(run_dir: Path) -> tuple[list[str], float | None]:
    """The run's tenants and offered writes per second per tenant, from ``run.json``."""
    try:
        doc = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return [], None
    tenants = [str(t) for t in doc.get("tenants") or []]
    rate = doc.get("write_rate")
    return tenants, float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None
