"""Real load, real faults, real PostgreSQL: the measurements the harness exists for.

One module-scoped run drives three tenants at 20 writes/s through the real Locust
CLI, freezes tenant-1 for FREEZE seconds, SIGKILLs and restarts tenant-2, then
deletes K acknowledged rows of tenant-0 behind the harness's back. Each test checks
one property of what the analysis reports.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyodbc
import pytest

from lab.engine import Engine
from lab.paths import lab_dir
from loadgen.journal import Write, read_journal
from loadgen.runner import LoadRun, default_run_id, preflight
from loadgen.tenants import load_tenants
from probes.analysis import analyze
from probes.engine_faults import freeze_tenant, kill_tenant
from probes.faultlog import read_faults
from probes.model import RunAnalysis
from probes.readback import read_back

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 20.0
FREEZE = 3.0
DELETED = 7


@dataclass
class Run:
    analysis: RunAnalysis
    writes: list[Write]
    freeze_at: float
    kill_at: float
    deleted_ends: list[float]


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    root = Path(tempfile.mkdtemp(prefix="test-load-", dir=lab_dir()))
    root.chmod(0o755)
    try:
        with Engine(root / "engine") as engine:
            instances = engine.create_many(3)
            run_id = default_run_id()
            run_dir = root / "run"
            run_dir.mkdir()
            tenants_file = run_dir / "tenants.json"
            tenants_file.write_text(json.dumps({"tenants": [i.tenant() for i in instances]}))
            tenants = load_tenants(tenants_file)
            preflight(tenants)
            load = LoadRun(tenants_file, run_dir, run_id, users=3, rate=RATE)
            load.start()
            try:
                load.wait_acks([t.name for t in tenants])
                time.sleep(5)
                freeze = freeze_tenant(engine, "tenant-1", FREEZE, run_dir / "faults.jsonl")
                time.sleep(4)
                kill = kill_tenant(engine, "tenant-2", run_dir / "faults.jsonl")
                time.sleep(8)
            finally:
                assert load.stop() is not None
            writes, clocks = read_journal(run_dir / "journal")
            # Delete DELETED acknowledged rows of tenant-0 written before the freeze.
            acked = [
                w
                for w in writes
                if w.tenant == "tenant-0" and w.outcome == "ok" and w.end < freeze.injected_at
            ]
            victims = acked[10 : 10 + DELETED]
            conn = pyodbc.connect(tenants[0].connection_string(), autocommit=True)
            for w in victims:
                conn.execute(
                    "DELETE FROM harness_writes WHERE run_id = ? AND writer = ? AND seq = ?",
                    (run_id, w.writer, w.seq),
                )
            conn.close()
            readbacks = read_back(tenants, run_id)
            analysis = analyze(
                run_id,
                writes,
                clocks,
                read_faults(run_dir / "faults.jsonl"),
                readbacks,
                [t.name for t in tenants],
                stability=3.0,
            )
            yield Run(analysis, writes, freeze.injected_at, kill.injected_at, [w.end for w in victims])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _result(run: Run, kind: str, tenant: str):
    fault = next(f for f in run.analysis.faults if f.fault.kind == kind)
    return next(r for r in fault.results if r.tenant == tenant)


def test_freeze_rto_matches_the_freeze(run: Run) -> None:
    result = _result(run, "freeze", "tenant-1")
    assert result.affected and result.recovered
    assert result.rto_seconds is not None
    assert abs(result.rto_seconds - FREEZE) <= 0.5, result
    assert result.max_ack_gap_seconds is not None and result.max_ack_gap_seconds >= FREEZE - 0.5


def test_other_tenants_keep_their_rate_during_the_freeze(run: Run) -> None:
    start, end = run.freeze_at, run.freeze_at + FREEZE
    for tenant in ("tenant-0", "tenant-2"):
        acks = [w.end for w in run.writes if w.tenant == tenant and w.outcome == "ok"]
        before = sum(1 for t in acks if start - 4 <= t < start) / 4
        during = sum(1 for t in acks if start <= t < end) / FREEZE
        assert before == pytest.approx(RATE, rel=0.1)
        assert during == pytest.approx(before, rel=0.1), (tenant, before, during)
        assert not _result(run, "freeze", tenant).affected


def test_kill_and_restart_loses_no_acknowledged_write(run: Run) -> None:
    result = _result(run, "kill", "tenant-2")
    assert result.affected and result.recovered
    assert result.rto_seconds is not None and 0 < result.rto_seconds < 5
    assert result.lost_acked_writes == 0
    totals = next(t for t in run.analysis.totals if t.tenant == "tenant-2")
    assert totals.lost == 0 and totals.unexpected == 0
    assert totals.failed + totals.unknown > 0  # the outage was seen by the client


def test_rows_deleted_behind_the_harness_are_counted_lost(run: Run) -> None:
    totals = next(t for t in run.analysis.totals if t.tenant == "tenant-0")
    assert totals.lost == DELETED
    result = _result(run, "freeze", "tenant-0")  # first fault after those acks
    assert result.lost_acked_writes == DELETED
    assert result.rpo_seconds == pytest.approx(run.freeze_at - min(run.deleted_ends), abs=1e-6)
    assert run.analysis.verdict == "NO-GO"
    assert any("tenant-0" in v and "lost" in v for v in run.analysis.violations)


def test_every_attempt_is_journaled_once(run: Run) -> None:
    keys = [(w.tenant, w.writer, w.seq) for w in run.writes]
    assert len(keys) == len(set(keys))
    per_writer: dict[int, list[int]] = {}
    for w in run.writes:
        per_writer.setdefault(w.writer, []).append(w.seq)
    for seqs in per_writer.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    for totals in run.analysis.totals:  # a row found but never journaled would be "unexpected"
        assert totals.unexpected == 0, totals
    latencies = [w.latency for w in run.writes if w.outcome == "ok"]
    assert statistics.median(latencies) < 0.1
