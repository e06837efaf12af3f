"""The run's analysis straight from its journal folder, with DuckDB: the same answers, any journal size.

:func:`analyze_folder` gives the :class:`~probes.model.RunAnalysis` that
:func:`probes.analysis.analyze` gives for ``read_journal(folder)``, field for field
(``tests/test_columnar_equivalence.py`` holds the two equal on generated journals), without
ever holding the journal as Python objects: a 24-hour soak of 50 tenants at 20 writes/s
(86.4 million attempts) is analysed within a bounded memory
(``tests/benchmarks/bench_soak_journal.py``).

How: the folder's segments, JSON lines and Parquet alike, are one DuckDB view
(:mod:`probes.columnar_source`). Tenants are fetched a group at a time as numpy arrays
(:mod:`probes.columnar_arrays`) and judged one by one (:mod:`probes.columnar_tenant`)
with analysis's own RTO, gap and result code; what is per attempt (sorting, counts,
medians, the read-back's ranges, coverage gaps) is numpy. Only per-tenant results are
kept, so memory is DuckDB's limit, one group of tenants (``EngineSettings.group_rows``)
and the tenant being judged.

:class:`ColumnarJournal` keeps one folder open for several questions (the analysis,
write latency, efficiency, per-minute roll-ups, a tenant's timeline counts:
:mod:`probes.columnar_metrics`), reading the JSON-lines segments once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probes.analysis import run_analysis
from probes.columnar_arrays import tenant_arrays
from probes.columnar_metrics import (
    Rollup,
    TimelineCounts,
    columnar_efficiency,
    columnar_latency,
    rollups,
    timeline_counts,
)
from probes.columnar_source import EngineSettings, JournalSource
from probes.columnar_tenant import TenantJudgement, judge_tenant
from probes.efficiency import Efficiency
from probes.latency import LATE_START_SECONDS, OutageWindow
from probes.model import Fault, FaultResult, LoadLife, Objective, ReadBack, RunAnalysis, RunContext
from probes.trust import collection_verdict, run_violations

__all__ = [
    "ColumnarJournal",
    "EngineSettings",
    "Rollup",
    "TimelineCounts",
    "analyze_folder",
    "minute_rollups",
]


class ColumnarJournal:
    """One journal folder opened for columnar questions; a context manager (closes DuckDB)."""

    def __init__(self, journal_dir: str | Path, settings: EngineSettings | None = None) -> None:
        self.source = JournalSource(journal_dir, settings)
        self._counts: dict[str, int] | None = None

    def __enter__(self) -> ColumnarJournal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close DuckDB and remove the temporary folder."""
        self.source.close()

    @property
    def counts(self) -> dict[str, int]:
        """Write attempts per tenant (every record checked once)."""
        if self._counts is None:
            self._counts = self.source.check()
        return self._counts

    def analyze(
        self,
        run_id: str,
        faults: list[Fault],
        readbacks: Mapping[str, ReadBack],
        tenants: list[str],
        objective: Objective = Objective(),  # noqa: B008 - frozen dataclass, safe as a default
        stability: float = 5.0,
        context: RunContext | None = None,
    ) -> RunAnalysis:
        """:func:`probes.analysis.analyze` of this journal (the same arguments, less writes and clocks)."""
        context = context or RunContext()
        counts = self.counts
        names = list(dict.fromkeys(tenants))
        names += sorted(set(counts) - set(names))
        ordered = sorted(faults, key=lambda f: f.injected_at)
        collected = collection_verdict(context.load, names)
        clocks = self.source.clocks()
        judged: dict[str, TenantJudgement] = {}
        for arrays in tenant_arrays(self.source, counts, names):
            judged[arrays.tenant] = judge_tenant(
                arrays,
                ordered,
                readbacks.get(arrays.tenant),
                collected.unknown.get(arrays.tenant),
                clocks,
                stability,
                context,
            )

        violations: list[str] = run_violations(ordered, context) + collected.violations
        fault_results = [
            FaultResult(fault=fault, results=[judged[t].results[i] for t in names])
            for i, fault in enumerate(ordered)
        ]
        totals = [judged[t].totals for t in names]
        starts = [j.first_start for j in judged.values() if j.first_start is not None]
        ends = [j.last_end for j in judged.values() if j.last_end is not None]
        span = (min(starts, default=None), max(ends, default=None))
        return run_analysis(
            run_id, objective, stability, names, fault_results, totals, violations, span, context.load
        )

    def latency(
        self,
        outages: Mapping[str, Sequence[OutageWindow]] | None = None,
        *,
        tenants: Sequence[str] = (),
        late_start: float = LATE_START_SECONDS,
        expected_interval: float | None = None,
    ) -> dict[str, dict[str, Any]]:
        """:func:`probes.latency.journal_latency` of this journal: the same summary, histograms included."""
        return columnar_latency(
            self.source,
            outages or {},
            tenants=tenants,
            late_start=late_start,
            expected_interval=expected_interval,
        )

    def efficiency(
        self,
        tenants: int,
        write_rate: float | None,
        load: LoadLife | None = None,
        outages: Mapping[str, Sequence[OutageWindow]] | None = None,
    ) -> Efficiency:
        """:func:`probes.efficiency.run_efficiency` of this journal's writes."""
        return columnar_efficiency(self.source, tenants, write_rate, load, outages or {})

    def minute_rollups(self) -> list[Rollup]:
        """Per tenant per minute: acks, fails, infos, p99 latency (:func:`.columnar_metrics.rollups`)."""
        return rollups(self.source)

    def timeline_counts(self, origin: float, edges: np.ndarray) -> dict[str, TimelineCounts]:
        """Each tenant's attempts per bin, as ``numpy.histogram(end - origin, edges)`` counts them."""
        return timeline_counts(self.source, origin, edges)


def analyze_folder(
    run_id: str,
    journal_dir: str | Path,
    faults: list[Fault],
    readbacks: Mapping[str, ReadBack],
    tenants: list[str],
    objective: Objective = Objective(),  # noqa: B008 - frozen dataclass, safe as a default
    stability: float = 5.0,
    context: RunContext | None = None,
    *,
    settings: EngineSettings | None = None,
) -> RunAnalysis:
    """``analyze(run_id, *read_journal(journal_dir), faults, readbacks, tenants, ...)``, columnar."""
    with ColumnarJournal(journal_dir, settings) as journal:
        return journal.analyze(run_id, faults, readbacks, tenants, objective, stability, context)


def minute_rollups(journal_dir: str | Path, *, settings: EngineSettings | None = None) -> list[Rollup]:
    """Per tenant per minute of the journal in ``journal_dir``: :meth:`ColumnarJournal.minute_rollups`."""
    with ColumnarJournal(journal_dir, settings) as journal:
        return journal.minute_rollups()
