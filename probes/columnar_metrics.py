"""Latency, efficiency, per-minute roll-ups and timeline counts of a journal, aggregated by DuckDB.

- :func:`columnar_latency` is :func:`probes.latency.journal_latency`: DuckDB counts each
  tenant's late starts, exclusions and unacknowledged attempts, and groups the attempts
  outside its outage windows by latency in whole microseconds (rounded half to even, as
  Python's ``round``); each distinct value is recorded once with its count (with the
  coordinated-omission correction when asked), so the histograms, and their encodings,
  are the ones the per-record reader builds.
- :func:`columnar_efficiency` is :func:`probes.efficiency.run_efficiency` over the same
  window, acks and outage windows (tenants' outage time summed in name order).
- :func:`rollups` gives per tenant per minute (by each attempt's ``end``, minutes of the
  UTC epoch) the acks, fails and infos, and the p99 of the acknowledged writes' latency
  from their schedule (``end - due``, else ``latency``): DuckDB's exact nearest-rank
  ``quantile_disc`` of whole microseconds, reported as HdrHistogram reports it (the
  highest value equivalent at 3 significant digits), so it reads like the run's other
  latency figures. Computed an hour at a time, opening only the segments of that hour.
- :func:`timeline_counts` bins every tenant's attempts exactly as ``numpy.histogram`` bins
  ``end - origin`` for the timeline plots, in one scan, without fetching the attempts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probes.columnar_source import JournalSource
from probes.efficiency import Efficiency, efficiency_over
from probes.latency import (
    HIGHEST_MICROSECONDS,
    LatencyRecorder,
    OutageWindow,
    TenantLatency,
    latency_summary,
    microseconds,
    new_histogram,
)
from probes.model import LoadLife

__all__ = [
    "Rollup",
    "TimelineCounts",
    "columnar_efficiency",
    "columnar_latency",
    "rollups",
    "timeline_counts",
]

_SECONDS = 'CASE WHEN due IS NULL THEN latency ELSE "end" - due END'
_MICROSECONDS = (
    f"(CASE WHEN isfinite({_SECONDS}) THEN least(greatest(round_even(({_SECONDS}) * 1000000, 0), 1), "
    f"{HIGHEST_MICROSECONDS}) ELSE {HIGHEST_MICROSECONDS} END)::BIGINT"
)
_HOUR = 3600.0


def _merged(spans: Sequence[OutageWindow]) -> list[tuple[float, float]]:
    """Closed windows ``[lo, hi]`` (no end: infinite) merged where they overlap or touch."""
    out: list[tuple[float, float]] = []
    for lo, hi in sorted((float(lo), math.inf if hi is None else float(hi)) for lo, hi in spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _marked(source: JournalSource, outages: Mapping[str, Sequence[OutageWindow]]) -> str:
    """The writes with ``io``: the attempt's scheduled time (else start) lies in one of its tenant's windows.

    A join on the tenant with the windows merged (so each attempt meets at most one), not
    a correlated ``EXISTS``: DuckDB would decorrelate that over every distinct attempt.
    """
    windows = [(t, lo, hi) for t, spans in outages.items() for lo, hi in _merged(spans)]
    if not windows:
        return "(SELECT *, false AS io FROM writes)"
    source.con.execute("CREATE OR REPLACE TEMP TABLE outage_windows (tenant VARCHAR, lo DOUBLE, hi DOUBLE)")
    source.con.executemany("INSERT INTO outage_windows VALUES (?, ?, ?)", windows)
    at = "coalesce(w.due, w.start)"
    return (
        f"(SELECT w.*, o.tenant IS NOT NULL AS io FROM writes w LEFT JOIN outage_windows o "
        f"ON w.tenant = o.tenant AND o.lo <= {at} AND {at} <= o.hi)"
    )


def columnar_latency(
    source: JournalSource,
    outages: Mapping[str, Sequence[OutageWindow]],
    *,
    tenants: Sequence[str] = (),
    late_start: float,
    expected_interval: float | None,
) -> dict[str, dict[str, Any]]:
    """:func:`probes.latency.journal_latency` of the journal in ``source`` (module docstring)."""
    marked = _marked(source, outages)
    interval = None if not expected_interval else microseconds(expected_interval)
    recorder = LatencyRecorder()
    for tenant, late, excluded, unacknowledged, scheduled in source.rows(
        "SELECT tenant, count(*) FILTER (WHERE due IS NOT NULL AND start - due > ?), "
        "count(*) FILTER (WHERE io AND outcome = 'ok'), count(*) FILTER (WHERE NOT io AND outcome <> 'ok'), "
        f"count(*) FILTER (WHERE NOT io AND due IS NOT NULL) FROM {marked} GROUP BY tenant",
        [late_start],
    ):
        recorder.tenants[tenant] = TenantLatency(
            late_starts=late,
            excluded_in_outage=excluded,
            from_schedule=scheduled,
            unacknowledged=unacknowledged,
        )
    values = source.rows(
        f"SELECT tenant, {_MICROSECONDS} AS us, count(*) FROM {marked} WHERE NOT io GROUP BY ALL"
    )
    for tenant, value, count in values:
        histogram = recorder.tenants[tenant].histogram
        if interval is None:
            histogram.record_value(value, count)
        else:
            histogram.record_corrected_value(value, interval, count)
    return latency_summary(recorder, tenants)


def columnar_efficiency(
    source: JournalSource,
    tenants: int,
    write_rate: float | None,
    load: LoadLife | None,
    outages: Mapping[str, Sequence[OutageWindow]],
) -> Efficiency:
    """:func:`probes.efficiency.run_efficiency` of the journal in ``source``."""
    rate = write_rate if write_rate is not None and write_rate > 0 else None
    first, last, attempts = source.rows(
        'SELECT min(CASE WHEN due IS NULL THEN start ELSE least(due, start) END), max("end"), count(*) '
        "FROM writes"
    )[0]
    lo = load.started_at if load is not None else None
    hi = load.stop_requested_at if load is not None else None
    if attempts:
        lo = first if lo is None else max(lo, first)
        hi = last if hi is None else hi
    if lo is None or hi is None or hi <= lo:
        return Efficiency(None, None, None, None, None, None, tenants, rate)
    marked = _marked(source, outages)
    acked = source.rows(
        f'SELECT count(*) FROM {marked} WHERE outcome = \'ok\' AND "end" >= ? AND "end" <= ? AND NOT io',
        [lo, hi],
    )[0][0]
    names = [t for (t,) in source.rows("SELECT DISTINCT tenant FROM writes")]
    return efficiency_over(lo, hi, acked, names, outages, tenants, rate)


@dataclass(frozen=True)
class Rollup:
    """One tenant's attempts that ended in one minute (``minute``: its start, epoch seconds UTC)."""

    tenant: str
    minute: float
    acks: int
    fails: int
    infos: int
    p99_ms: float | None  # None: no acknowledged write in that minute


def rollups(source: JournalSource) -> list[Rollup]:
    """Per tenant per minute, sorted by tenant then minute (module docstring)."""
    first, last = source.rows('SELECT min("end"), max("end") FROM writes')[0]
    if first is None:
        return []
    template = new_histogram()
    out: list[Rollup] = []
    hour = math.floor(first / _HOUR) * _HOUR
    while hour <= last:
        rows = source.rows(
            "SELECT tenant, floor(\"end\" / 60) * 60 AS minute, count(*) FILTER (WHERE outcome = 'ok'), "
            "count(*) FILTER (WHERE outcome = 'fail'), count(*) FILTER (WHERE outcome = 'info'), "
            f"quantile_disc({_MICROSECONDS}, 0.99) FILTER (WHERE outcome = 'ok') "
            f"FROM {source.writes_ending(hour, hour + _HOUR)} GROUP BY ALL"
        )
        out += [
            Rollup(
                tenant=t,
                minute=float(minute),
                acks=acks,
                fails=fails,
                infos=infos,
                p99_ms=None if p99 is None else template.get_highest_equivalent_value(p99) / 1000.0,
            )
            for t, minute, acks, fails, infos, p99 in rows
        ]
        hour += _HOUR
    out.sort(key=lambda r: (r.tenant, r.minute))
    return out


@dataclass(frozen=True)
class TimelineCounts:
    """One tenant's attempts per bin of ``edges`` (seconds after ``origin``), by outcome."""

    edges: np.ndarray
    acks: np.ndarray
    fails: np.ndarray
    infos: np.ndarray


def timeline_counts(source: JournalSource, origin: float, edges: np.ndarray) -> dict[str, TimelineCounts]:
    """Per tenant, ``numpy.histogram(end - origin, edges)`` of its attempts per outcome, in one scan.

    A value lies in bin ``i`` when ``edges[i] <= value < edges[i + 1]``; the last bin also
    holds its right edge; values outside the edges are not counted. Every tenant with an
    attempt has an entry (all zeros when none falls within the edges).
    """
    edges = np.asarray(edges, dtype=np.float64)
    bins = max(len(edges) - 1, 0)
    out: dict[str, TimelineCounts] = {}

    def entry(tenant: str) -> TimelineCounts:
        if tenant not in out:
            out[tenant] = TimelineCounts(edges, *(np.zeros(bins, np.int64) for _ in range(3)))
        return out[tenant]

    for (tenant,) in source.rows("SELECT DISTINCT tenant FROM writes ORDER BY tenant"):
        entry(tenant)
    if bins < 1:
        return out
    width = (edges[-1] - edges[0]) / bins
    rows = source.rows(
        f"""SELECT tenant, outcome, CASE
                WHEN rel = e[{bins + 1}] THEN {bins - 1}
                WHEN rel < e[j + 1] THEN j - 1
                WHEN rel >= e[j + 2] THEN j + 1
                ELSE j END AS i, count(*)
            FROM (SELECT tenant, outcome, rel, e,
                         least(greatest(floor((rel - e[1]) / ?), 0), {bins - 1})::BIGINT AS j
                  FROM (SELECT tenant, outcome, "end" - ? AS rel, ?::DOUBLE[] AS e FROM writes))
            WHERE rel >= e[1] AND rel <= e[{bins + 1}]
            GROUP BY ALL""",
        [width, origin, edges.tolist()],
    )
    for tenant, outcome, i, n in rows:
        counts = entry(tenant)
        {"ok": counts.acks, "fail": counts.fails, "info": counts.infos}[outcome][i] = n
    return out
