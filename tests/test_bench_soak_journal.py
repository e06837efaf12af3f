"""The soak-journal benchmark, small: what it plants is what the analysis must find; its check can fail."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pyarrow.parquet as pq

from loadgen.journal import read_journal
from loadgen.segments import SCHEMA
from probes.analysis import analyze
from probes.columnar import analyze_folder
from probes.model import Fault, LoadLife, Objective, ReadBack, RunAnalysis, RunContext
from tests.benchmarks.bench_soak_journal import check_found
from tests.benchmarks.soak_journal_data import T0, Plan, expected, make_plan, write_jsonl, write_minute


def _plan() -> Plan:
    plan = make_plan(60_000, tenants=4, rate=20.0, processes=2)  # 12.5 minutes
    assert plan.seconds == 720.0 and len(plan.faults) == 1
    return replace(
        plan, faults=(*plan.faults, replace(plan.faults[0], name="second", at=T0 + 500.3, tenant=1))
    )


def _analyse(plan: Plan, folder: Path, *, columnar: bool = True) -> RunAnalysis:
    exp = expected(plan)
    faults = [Fault(f.name, "planted", f.at, plan.tenant_name(f.tenant), f.at + 1.0) for f in plan.faults]
    readbacks = {t: ReadBack(t, tuple(r), T0 + plan.seconds + 60) for t, r in exp.ranges.items()}
    context = RunContext(
        load=LoadLife(started_at=T0 - 1, stop_requested_at=T0 + plan.seconds), write_rate=plan.rate
    )
    if columnar:
        return analyze_folder("soak-bench", folder, faults, readbacks, [], Objective(), 5.0, context)
    writes, clocks = read_journal(folder)
    return analyze("soak-bench", writes, clocks, faults, readbacks, [], Objective(), 5.0, context)


def test_every_planted_outage_and_loss_is_found_in_segments_as_in_json_lines(tmp_path: Path) -> None:
    plan = _plan()
    segments, lines = tmp_path / "segments", tmp_path / "lines"
    segments.mkdir()
    lines.mkdir()
    rows = sum(write_minute(plan, segments, m)[0] for m in range(plan.minutes))
    assert rows == plan.tenants * plan.rate * plan.seconds
    assert len(list(segments.glob("*.parquet"))) == 2 * (plan.minutes - 1)  # the last minute is still live
    assert len(list(segments.glob("*.jsonl"))) == 2
    assert pq.read_schema(next(segments.glob("*.parquet"))).remove_metadata() == SCHEMA.remove_metadata()
    write_jsonl(plan, lines)

    analysis = _analyse(plan, segments)
    assert check_found(plan, expected(plan), asdict(analysis)) == []
    assert analysis == _analyse(plan, lines) == _analyse(plan, lines, columnar=False)
    assert sum(t.lost or 0 for t in analysis.totals) == sum(len(k) for k in expected(plan).lost.values()) > 0


def test_a_loss_or_outage_the_analysis_did_not_find_is_named(tmp_path: Path) -> None:
    plan = _plan()
    for m in range(plan.minutes):
        write_minute(plan, tmp_path, m)
    found = asdict(_analyse(plan, tmp_path))
    longer = replace(
        plan, faults=(replace(plan.faults[0], outage=plan.faults[0].outage + 3.0), plan.faults[1])
    )
    misses = check_found(longer, expected(plan), found)
    assert any("outage of" in m and "read as RTO" in m for m in misses)
    more = expected(plan)
    more.lost[0].append((0, 1))
    misses = check_found(plan, more, found)
    assert any("lost writes planted" in m for m in misses)
