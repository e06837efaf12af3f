"""Write latency per tenant as HDR histograms, from the acknowledged-write journal.

What enters a tenant's histogram, and how it is measured:

- **Every attempt outside an outage**: an acknowledged write at its latency; a ``fail``
  or ``info`` attempt (a timeout, a refused connection outside any fault window) at the
  time it took to give up, a lower bound on what its client waited (counted in
  ``unacknowledged``). A server that stalls for a second outside a fault therefore
  shows in the percentiles even though none of the stalled writes was acknowledged.
- **Corrected for the writes a stall kept from being sent**: with a known write
  interval (``expected_interval``, one over the write rate), an attempt that took longer
  than the interval is recorded with HdrHistogram's coordinated-omission correction,
  which adds the writes that were due meanwhile at the latencies they would have seen.
- **From the schedule**: under paced (open-model) load each attempt journals ``due``,
  the time it was scheduled to start, and its latency is ``end - due``. A writer that
  stalled therefore shows the stall in every attempt it delayed, instead of hiding it
  by offering fewer writes (no coordinated omission). Without ``due`` (unpaced load,
  journals written before pacing was recorded) the journaled ``latency`` is used.
- **Late starts**: attempts (any outcome) that started more than ``late_start`` seconds
  (default 10 ms) after they were due: the load generator itself fell behind.
- **Outages excluded**: an acknowledged write whose scheduled time (its start when
  ``due`` is unknown) falls inside one of its tenant's outage windows is left out of
  the histogram and counted in ``excluded_in_outage``. A window runs from a fault's
  injection to the tenant's recovery (:func:`outage_windows`); one that never
  recovered extends to the end of the run.

Percentiles are nearest-rank (the smallest recorded value with at least p % of the
count at or below it), as the run's RTO percentiles are.

Histograms cover 1 µs to 1 hour with 3 significant digits (values are recorded in
whole microseconds and clamped into that range). Each journal file (one load process)
gets its own histograms, merged afterwards with HdrHistogram's ``add``: merging is
exact, so the result equals one histogram over every record. Each entry carries its
histogram in HdrHistogram's compressed base64 encoding, so a later reader can merge
tenants, runs or trials (:func:`merge_encoded`) and read percentiles again
(:func:`histogram_stats`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from loadgen.journal import Write, journal_segments, segment_writes
from probes.model import RunAnalysis

__all__ = [
    "ALL_TENANTS",
    "HIGHEST_MICROSECONDS",
    "LATE_START_SECONDS",
    "LOWEST_MICROSECONDS",
    "SIGNIFICANT_FIGURES",
    "LatencyRecorder",
    "OutageWindow",
    "TenantLatency",
    "attempt_latency",
    "encode_histogram",
    "histogram_stats",
    "journal_latency",
    "latency_summary",
    "merge_encoded",
    "microseconds",
    "new_histogram",
    "outage_windows",
    "tenant_key",
]

LOWEST_MICROSECONDS = 1
HIGHEST_MICROSECONDS = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES = 3
LATE_START_SECONDS = 0.010
ALL_TENANTS = "all"
"""Key of the all-tenants entry; a tenant literally named ``all`` is listed as ``tenant:all``."""

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50_ms", 50.0),
    ("p90_ms", 90.0),
    ("p99_ms", 99.0),
    ("p999_ms", 99.9),
)

OutageWindow = tuple[float, float | None]
"""``(from, to)`` epoch seconds; ``to`` None: the tenant never recovered (to the end of the run)."""


def new_histogram() -> HdrHistogram:
    """An empty histogram of microseconds, 1 µs to 1 hour, 3 significant digits."""
    return HdrHistogram(LOWEST_MICROSECONDS, HIGHEST_MICROSECONDS, SIGNIFICANT_FIGURES)


def encode_histogram(histogram: HdrHistogram) -> str:
    """HdrHistogram's compressed base64 encoding, as text."""
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)


def merge_encoded(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every histogram in ``encoded`` (empty for an empty list)."""
    merged = new_histogram()
    for text in encoded:
        merged.add(HdrHistogram.decode(text))
    return merged


def _ms(microseconds: int) -> float:
    return microseconds / 1000.0


def histogram_stats(histogram: HdrHistogram) -> dict[str, Any]:
    """``count`` and ``p50_ms``, ``p90_ms``, ``p99_ms``, ``p999_ms``, ``max_ms`` (None when empty).

    Values are HdrHistogram's: the highest value equivalent to the recorded one at 3
    significant digits, so within 0.1 % (and 1 µs) above the exact value.
    """
    count = int(histogram.get_total_count())
    out: dict[str, Any] = {"count": count}
    for key, pct in PERCENTILES:
        out[key] = _ms(_nearest_rank(histogram, pct, count)) if count else None
    out["max_ms"] = _ms(histogram.get_max_value()) if count else None
    return out


def _nearest_rank(histogram: HdrHistogram, percentile: float, count: int) -> int:
    """The value at nearest rank ``ceil(p/100 * count)`` (HdrHistogram's own rounds the rank down)."""
    target = max(1, math.ceil(percentile / 100.0 * count - 1e-9))
    seen = 0
    value = 0
    for item in histogram.get_recorded_iterator():
        seen += item.count_at_value_iterated_to
        value = item.value_iterated_to
        if seen >= target:
            break
    return int(histogram.get_highest_equivalent_value(value))


def attempt_latency(write: Write) -> float:
    """Seconds from the attempt's scheduled time (``end - due``) when known, else its ``latency``."""
    due = getattr(write, "due", None)
    return write.end - due if due is not None else write.latency


def microseconds(seconds: float) -> int:
    if not math.isfinite(seconds):
        return HIGHEST_MICROSECONDS
    return min(max(round(seconds * 1_000_000), LOWEST_MICROSECONDS), HIGHEST_MICROSECONDS)


@dataclass
class TenantLatency:
    """One tenant's histogram and counts (mergeable: :meth:`add`)."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    late_starts: int = 0
    excluded_in_outage: int = 0
    from_schedule: int = 0
    unacknowledged: int = 0

    def add(self, other: TenantLatency) -> None:
        """Merge ``other`` into this one."""
        self.histogram.add(other.histogram)
        self.late_starts += other.late_starts
        self.excluded_in_outage += other.excluded_in_outage
        self.from_schedule += other.from_schedule
        self.unacknowledged += other.unacknowledged

    def as_dict(self) -> dict[str, Any]:
        """The summary entry: stats in ms, counts, and the encoded histogram."""
        return {
            **histogram_stats(self.histogram),
            "late_starts": self.late_starts,
            "excluded_in_outage": self.excluded_in_outage,
            "measured_from_schedule": self.from_schedule,
            "unacknowledged": self.unacknowledged,
            "histogram": encode_histogram(self.histogram),
        }


class LatencyRecorder:
    """Records attempts into per-tenant histograms as they are read; one per journal file."""

    def __init__(
        self,
        outages: Mapping[str, Sequence[OutageWindow]] | None = None,
        late_start: float = LATE_START_SECONDS,
        expected_interval: float | None = None,
    ) -> None:
        self.outages: Mapping[str, Sequence[OutageWindow]] = outages or {}
        self.late_start = late_start
        self.expected_interval = expected_interval
        self.tenants: dict[str, TenantLatency] = {}

    def _tenant(self, name: str) -> TenantLatency:
        entry = self.tenants.get(name)
        if entry is None:
            entry = self.tenants[name] = TenantLatency()
        return entry

    def _in_outage(self, tenant: str, at: float) -> bool:
        return any(lo <= at and (hi is None or at <= hi) for lo, hi in self.outages.get(tenant, ()))

    def record(self, write: Write) -> None:
        """Count one attempt: late start, then (if acknowledged) histogram or outage exclusion."""
        entry = self._tenant(write.tenant)
        due = getattr(write, "due", None)
        if due is not None and write.start - due > self.late_start:
            entry.late_starts += 1
        if self._in_outage(write.tenant, write.start if due is None else due):
            entry.excluded_in_outage += write.outcome == "ok"
            return
        if write.outcome != "ok":
            entry.unacknowledged += 1
        value = microseconds(attempt_latency(write))
        if self.expected_interval:
            entry.histogram.record_corrected_value(value, microseconds(self.expected_interval))
        else:
            entry.histogram.record_value(value)
        if due is not None:
            entry.from_schedule += 1

    def record_all(self, writes: Iterable[Write]) -> LatencyRecorder:
        """Record every attempt of ``writes``; returns self."""
        for write in writes:
            self.record(write)
        return self

    def merge(self, other: LatencyRecorder) -> None:
        """Add ``other``'s tenants (another journal file) into this recorder."""
        for name, entry in other.tenants.items():
            self._tenant(name).add(entry)


def outage_windows(analysis: RunAnalysis) -> dict[str, list[OutageWindow]]:
    """Per tenant, ``(fault injected, recovered_at)`` of each fault that affected it.

    Starts at the fault's recorded injection (as :mod:`probes.trust` does for its
    outage windows; ``first_failure_at`` lags it, being the first failed attempt's end).
    A tenant the fault did not affect and that recovered gets no window: its latency
    while a neighbour was down is latency. Not recovered: the window has no end.
    """
    out: dict[str, list[OutageWindow]] = {}
    for fault_result in analysis.faults:
        at = fault_result.fault.injected_at
        for result in fault_result.results:
            if result.affected or not result.recovered:
                out.setdefault(result.tenant, []).append((at, result.recovered_at))
    return out


def tenant_key(tenant: str) -> str:
    """The key of ``tenant``'s entry in a latency summary (``all`` is the merged entry's)."""
    return f"tenant:{tenant}" if tenant == ALL_TENANTS else tenant


def latency_summary(recorder: LatencyRecorder, tenants: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """``{tenant: entry, ..., "all": merged entry}``; every name in ``tenants`` has an entry."""
    names = list(dict.fromkeys(tenants)) + sorted(set(recorder.tenants) - set(tenants))
    merged = TenantLatency()
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        entry = recorder.tenants.get(name) or TenantLatency()
        merged.add(entry)
        out[tenant_key(name)] = entry.as_dict()
    out[ALL_TENANTS] = merged.as_dict()
    return out


def journal_latency(
    folder: str | Path,
    outages: Mapping[str, Sequence[OutageWindow]] | None = None,
    *,
    tenants: Sequence[str] = (),
    late_start: float = LATE_START_SECONDS,
    expected_interval: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Latency per tenant (and all tenants) of the journal in ``folder``: :func:`latency_summary`.

    Each journal segment (JSON lines or Parquet) is read once into its own recorder, then
    merged into the total.
    ``expected_interval`` (seconds between one tenant's writes) turns on the
    coordinated-omission correction.
    """
    total = LatencyRecorder(outages, late_start, expected_interval)
    for path in journal_segments(folder):
        total.merge(LatencyRecorder(outages, late_start, expected_interval).record_all(segment_writes(path)))
    return latency_summary(total, tenants)
