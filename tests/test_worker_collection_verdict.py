"""A cluster load's journal collection and the verdict: never GO with records missing.

Constructed journals and run folders, no database: a tenant written by a worker whose
journal did not fully reach the master has its losses "cannot tell" and the run is
NO-GO naming the worker and the gap; a missing or inconsistent collection status makes
every tenant "cannot tell"; a complete collection is judged exactly as a local load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from loadgen.journal import JournalWriter, Write
from probes.analysis import analyze
from probes.model import Fault, LoadCollection, LoadLife, ReadBack, RunAnalysis, RunContext, WorkerCollection
from probes.readback import save_readback
from reports.build import build, read_run_meta
from reports.errors import ReportError

TENANTS = ["t0", "t1", "t2"]
STEP = 0.05
FAULT = Fault(name="pod-kill", kind="pod-kill", injected_at=10.0, target="t1", ended_at=10.0)


def _writes() -> list[Write]:
    """Each tenant written by one writer every STEP s for 20 s; t1 fails for 1 s after the fault."""
    out: list[Write] = []
    for writer, tenant in enumerate(TENANTS):
        for seq in range(int(20 / STEP)):
            start = round(seq * STEP, 6)
            down = tenant == "t1" and 10.0 <= start < 11.0
            out.append(Write(tenant, writer, seq, start, start + 0.01, 0.01, "fail" if down else "ok"))
    return out


def _readbacks(writes: list[Write], drop: int = 0) -> dict[str, ReadBack]:
    """Every acknowledged row back, except the first ``drop`` acknowledged rows of t1."""
    out: dict[str, ReadBack] = {}
    for tenant in TENANTS:
        acked = [w for w in writes if w.tenant == tenant and w.outcome == "ok"]
        if tenant == "t1":
            acked = acked[drop:]
        out[tenant] = ReadBack.of_keys(tenant, (w.key for w in acked), read_at=100.0)
    return out


def _worker(index: int, *, missing: tuple[tuple[int, int], ...] = (), final: bool = True) -> WorkerCollection:
    received = 12 - sum(hi - lo + 1 for lo, hi in missing)
    return WorkerCollection(
        index=index,
        worker=f"pod-{index}_abc",
        tenants=(TENANTS[index],),
        batches=received,
        missing=missing,
        records=received * 100,
        final_batches=12 if final else None,
        final_records=1200 if final else None,
        complete=not missing and final,
    )


def _cluster(collection: LoadCollection | None, problems: tuple[str, ...] = ()) -> LoadLife:
    return LoadLife(
        started_at=0.0,
        stop_requested_at=20.0,
        ended_at=21.0,
        exit_code=0,
        mode="cluster",
        workers=3,
        collection=collection,
        problems=problems,
    )


COMPLETE = LoadCollection(expected_workers=3, complete=True, workers=tuple(_worker(i) for i in range(3)))


def _analyze(load: LoadLife | None, drop: int = 0) -> RunAnalysis:
    writes = _writes()
    context = RunContext(chaos_status="completed", load=load, write_rate=1 / STEP)
    return analyze("run-c", writes, [], [FAULT], _readbacks(writes, drop), TENANTS, context=context)


def _local() -> LoadLife:
    return LoadLife(started_at=0.0, stop_requested_at=20.0, ended_at=21.0, exit_code=0)


def _totals(a: RunAnalysis, tenant: str) -> Any:
    return next(t for t in a.totals if t.tenant == tenant)


def test_the_local_baseline_is_go() -> None:
    a = _analyze(_local())
    assert a.verdict == "GO", a.violations


def test_one_incomplete_worker_among_three_makes_its_tenant_cannot_tell() -> None:
    workers = (_worker(0), _worker(1, missing=((3, 5), (9, 9))), _worker(2))
    a = _analyze(_cluster(LoadCollection(expected_workers=3, complete=False, workers=workers)), drop=4)

    assert a.verdict == "NO-GO"
    t1 = _totals(a, "t1")
    assert t1.lost is None and t1.unexpected is None and t1.recovered_unknown is None
    assert "load worker 1 (id pod-1_abc)" in t1.journal_incomplete
    assert "3-5, 9" in t1.journal_incomplete
    assert t1.readback_error is None  # the read-back itself worked
    assert t1.lost_keys == []  # the four rows not found are not claimed lost
    r1 = next(r for r in a.faults[0].results if r.tenant == "t1")
    assert r1.lost_acked_writes is None and r1.rpo_seconds is None

    named = [v for v in a.violations if "load worker 1 (id pod-1_abc)" in v]
    assert len(named) == 1 and "3-5, 9" in named[0] and "t1" in named[0]
    assert not any("lost (loss window" in v for v in a.violations)  # no loss claimed for t1

    local = _analyze(_local())
    for tenant in ("t0", "t2"):
        assert asdict(_totals(a, tenant)) == asdict(_totals(local, tenant))
        assert _totals(a, tenant).lost == 0
    assert len(a.violations) == 1


def test_a_worker_that_sent_no_final_message_is_incomplete_even_marked_complete() -> None:
    lying = replace(_worker(2, final=False), complete=True, reason="the pod was evicted")
    collection = LoadCollection(expected_workers=3, complete=True, workers=(_worker(0), _worker(1), lying))
    a = _analyze(_cluster(collection))
    assert a.verdict == "NO-GO"
    t2 = _totals(a, "t2")
    assert t2.lost is None
    assert "load worker 2 (id pod-2_abc)" in t2.journal_incomplete
    assert "the pod was evicted" in t2.journal_incomplete and "no final message" in t2.journal_incomplete
    assert _totals(a, "t0").lost == 0 and _totals(a, "t1").lost == 0


def test_fewer_records_than_the_worker_sent_is_incomplete() -> None:
    short = replace(_worker(0), records=1199)
    collection = LoadCollection(expected_workers=3, complete=True, workers=(short, _worker(1), _worker(2)))
    a = _analyze(_cluster(collection))
    assert a.verdict == "NO-GO"
    assert "1199 of the 1200 write records" in _totals(a, "t0").journal_incomplete


@pytest.mark.parametrize(
    ("collection", "needle"),
    [
        (None, "no collection status"),
        (replace(COMPLETE, complete=False), "names no incomplete worker"),
        (replace(COMPLETE, workers=COMPLETE.workers[:2]), "not each of the 3 expected"),
        (replace(COMPLETE, expected_workers=2, workers=COMPLETE.workers[:2]), "ran 3 worker(s)"),
        (
            replace(COMPLETE, complete=False, workers=(replace(_worker(0, final=False), tenants=()),)),
            "not each of the 3",
        ),
        (LoadCollection(expected_workers=0, complete=True), "expects no worker"),
    ],
    ids=[
        "missing",
        "incomplete-unnamed",
        "worker-not-listed",
        "count-mismatch",
        "worker-without-tenants",
        "no-worker-expected",
    ],
)
def test_an_untrustworthy_collection_makes_every_tenant_cannot_tell(
    collection: LoadCollection | None, needle: str
) -> None:
    a = _analyze(_cluster(collection))
    assert a.verdict == "NO-GO"
    for tenant in TENANTS:
        t = _totals(a, tenant)
        assert t.lost is None, tenant
        assert needle in t.journal_incomplete
    assert any(needle in v for v in a.violations)


def test_an_incomplete_worker_naming_no_tenants_fails_closed() -> None:
    nameless = replace(_worker(1, missing=((0, 0),)), tenants=())
    workers = (_worker(0), nameless, _worker(2))
    a = _analyze(_cluster(LoadCollection(expected_workers=3, complete=False, workers=workers)))
    assert all(_totals(a, t).lost is None for t in TENANTS)
    assert any("names no tenants" in v for v in a.violations)


def test_a_complete_collection_is_judged_exactly_as_a_local_load() -> None:
    for drop in (0, 3):
        cluster, local = _analyze(_cluster(COMPLETE), drop), _analyze(_local(), drop)
        assert cluster.verdict == local.verdict
        assert cluster.violations == local.violations
        assert [asdict(t) for t in cluster.totals] == [asdict(t) for t in local.totals]
        assert [asdict(f) for f in cluster.faults] == [asdict(f) for f in local.faults]
    assert _analyze(_cluster(COMPLETE), 3).verdict == "NO-GO"  # a real loss is still a loss
    assert _totals(_analyze(_cluster(COMPLETE), 3), "t1").lost == 3


def test_each_problem_of_the_load_is_a_violation() -> None:
    a = _analyze(_cluster(COMPLETE, problems=("the master pod was lost at 12:00:03 UTC",)))
    assert a.verdict == "NO-GO"
    assert a.violations == ["cluster load: the master pod was lost at 12:00:03 UTC"]
    assert all(_totals(a, t).lost == 0 for t in TENANTS)


# --- run folders: run.json's load block read, and the report says it ---------------------------


def _collection_doc(missing: list[list[int]]) -> dict[str, Any]:
    def worker(i: int) -> dict[str, Any]:
        gap = missing if i == 1 else []
        received = 12 - sum(hi - lo + 1 for lo, hi in gap)
        return {
            "worker": f"pod-{i}_abc",
            "index": i,
            "tenants": [TENANTS[i]],
            "batches": received,
            "missing": gap,
            "records": received * 100,
            "final": {"batches": 12, "records": 1200},
            "complete": not gap,
            "reason": None,
        }

    return {"expected_workers": 3, "complete": not missing, "workers": [worker(i) for i in range(3)]}


def _run_folder(root: Path, load: dict[str, Any]) -> Path:
    run = root / "run-c"
    writes = _writes()
    journal = JournalWriter(run / "journal", "run-c")
    for w in writes:
        journal.write(w)
    journal.close()
    save_readback(run / "readback.json", _readbacks(writes))
    (run / "faults.jsonl").write_text(
        json.dumps(
            {"name": FAULT.name, "kind": FAULT.kind, "target": "t1", "injected_at": 10.0, "ended_at": 10.0}
        )
        + "\n"
    )
    doc = {"run_id": "run-c", "tenants": TENANTS, "write_rate": 1 / STEP, "load": load}
    (run / "run.json").write_text(json.dumps(doc))
    return run


CLUSTER_LOAD = {"started_at": 0.0, "stop_requested_at": 20.0, "ended_at": 21.0, "exit_code": 0}


def test_run_json_cluster_block_is_read(tmp_path: Path) -> None:
    load = {**CLUSTER_LOAD, "mode": "cluster", "workers": 3, "collection": _collection_doc([[3, 5]])}
    meta = read_run_meta(_run_folder(tmp_path, load))
    life = meta.context.load
    assert life is not None and life.mode == "cluster" and life.workers == 3
    assert life.collection is not None and life.collection.expected_workers == 3
    assert life.collection.workers[1].missing == ((3, 5),)
    assert life.collection.workers[1].final_batches == 12


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"mode": "swarm"}, "'load.mode' must be one of local, cluster"),
        ({"collection": {"expected_workers": 3, "complete": True, "workers": [{"index": 0}]}}, "tenants"),
        ({"collection": {**_collection_doc([]), "expected_workers": -1}}, "expected_workers"),
        ({"problems": "lost"}, "'load.problems'"),
    ],
    ids=["mode", "worker-tenants", "expected", "problems"],
)
def test_a_malformed_load_block_is_one_line_naming_the_key(tmp_path: Path, change: dict, needle: str) -> None:
    load = {**CLUSTER_LOAD, "mode": "cluster", "workers": 3, "collection": _collection_doc([]), **change}
    with pytest.raises(ReportError) as caught:
        read_run_meta(_run_folder(tmp_path, load))
    text = str(caught.value)
    assert needle in text and "fix run.json" in text and "\n" not in text


def test_a_local_block_is_read_as_today(tmp_path: Path) -> None:
    life = read_run_meta(_run_folder(tmp_path, dict(CLUSTER_LOAD))).context.load
    assert life == LoadLife(started_at=0.0, stop_requested_at=20.0, ended_at=21.0, exit_code=0)


def test_the_report_of_an_incomplete_cluster_run_says_cannot_tell(tmp_path: Path) -> None:
    load = {**CLUSTER_LOAD, "mode": "cluster", "workers": 3, "collection": _collection_doc([[3, 5]])}
    run = _run_folder(tmp_path, load)
    report = build(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"] == "NO-GO"
    assert summary["totals"]["t1"]["lost"] is None
    assert "load worker 1 (id pod-1_abc)" in summary["totals"]["t1"]["journal_incomplete"]
    assert summary["totals"]["t0"]["lost"] == 0
    assert summary["load"]["collection"]["complete"] is False
    text = report.read_text()
    assert "- Cluster load: 3 Locust worker pod(s) and a master; journals incomplete: " in text
    assert "batch(es) 3-5 never arrived" in text
