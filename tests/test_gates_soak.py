"""The soak gate (reports.gates_soak) from hand-written run folders.

A soak run's ``summary.json`` carries the ``soak`` block; one test makes it with
``probes.soak_summary.summarize`` from a soak folder, the others write the block by hand
so each input is chosen here. ``reports.gates.judge`` is called as the go/no-go
document calls it, so the lab-only rule applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from probes.soak_summary import summarize
from reports.gate_base import FAIL, LAB_ONLY, NOT_RUN, PASS, GateContext
from reports.gates import GATES, judge
from reports.gates_soak import soak_block
from reports.gonogo_runs import load_run
from tests.test_soak_summary import _round, _soak

T0 = 1_700_000_000.0
CLUSTER = {
    "kind": "cluster",
    "api_server": "https://api.prod.example.com:6443",
    "kubernetes_version": "v1.29.4",
}
LAB = {"kind": "lab", "api_server": "https://127.0.0.1:36443", "kubernetes_version": "v1.32.0-lab"}
SLOPES = [
    {"pod": "tenants/t-0-0", "role": "mssql", "metric": m, "per_hour": 0.0, "first_floor": 1.0, "leak": False}
    for m in ("memory_bytes", "connections")
] + [{"pod": "ops/op-1", "role": "operator", "metric": "connections", "per_hour": None, "leak": None}]


def _block(hours: float, **changes: Any) -> dict[str, Any]:
    block = {
        "planned_seconds": hours * 3600,
        "covered_seconds": hours * 3600,
        "complete": True,
        "incomplete_reason": None,
        "checks": int(hours * 60),
        "rpo_budget_seconds": 900.0,
        "backup_age_max_seconds": 312.0,
        "backup_age_max": {"t-0": 312.0, "t-1": 290.0},
        "failed_backup_jobs": [],
        "restarts": {},
        "slopes": SLOPES,
        "drills": {"planned": 6, "run": 6, "validated": 6, "failed": 0},
        "violations": [],
    }
    return {**block, **changes}


def _run(
    root: Path, name: str, *, target: dict[str, Any] = CLUSTER, hours: float = 0.2, **summary: Any
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    doc = {
        "run_id": name,
        "verdict": "GO",
        "violations": [],
        "target": target,
        "tenants": ["t-0", "t-1"],
        "faults": [],
        "started_at_epoch": T0,
        "ended_at_epoch": T0 + hours * 3600,
        "experiment": {"title": "soak", "file": "experiments/opt-in/soak.json", "fault": "soak"},
        "chaos_status": "completed",
        **summary,
    }
    (folder / "summary.json").write_text(json.dumps(doc))
    return folder


def _judge(*folders: Path) -> tuple[str, list[str]]:
    runs = [load_run(f) for f in folders]
    return judge("soak-24h", GateContext(runs, folders[0].parent, folders[0].parent / "doc.md"))


def test_the_gate_is_registered_once_from_its_own_module() -> None:
    assert GATES["soak-24h"].__module__ == "reports.gates_soak"


def test_a_clean_day_long_soak_on_a_cluster_passes_with_its_numbers(tmp_path: Path) -> None:
    status, evidence = _judge(_run(tmp_path, "soak", hours=24.1, soak=_block(24.1)))
    assert status == PASS
    assert evidence[0] == "longest soak 24.10 h of the 24 h required, on the cluster ([soak](soak/))"
    detail = evidence[-1]
    assert detail.startswith("[soak](soak/): clean soak, on the cluster (24.10 h of 24.10 h planned)")
    assert "backup age max 312 s (t-0) (RPO budget 900 s)" in detail
    assert "drills 6 of 6 run validated (6 planned)" in detail
    assert "slopes 2 judged, no leak, 1 without a verdict" in detail


@pytest.mark.parametrize(
    "drills",
    [
        {"planned": 0, "run": 0, "validated": 0, "failed": 0},
        {"planned": 6, "run": 5, "validated": 5, "failed": 0},
    ],
)
def test_a_day_long_soak_without_every_planned_drill_validated_is_not_a_pass(
    tmp_path: Path, drills: dict[str, int]
) -> None:
    status, evidence = _judge(_run(tmp_path, "soak", hours=24.1, soak=_block(24.1, drills=drills)))
    assert status == NOT_RUN
    assert any("no restore drill was planned and validated" in e for e in evidence)


def test_a_short_clean_soak_on_a_cluster_is_not_run(tmp_path: Path) -> None:
    status, evidence = _judge(_run(tmp_path, "soak", hours=3.2, soak=_block(3.2)))
    assert status == NOT_RUN
    assert evidence[0].startswith("longest soak 3.20 h of the 24 h required, on the cluster")


def test_a_plain_long_run_without_a_soak_block_does_not_count(tmp_path: Path) -> None:
    status, evidence = _judge(_run(tmp_path, "long", hours=24.5))
    assert status == NOT_RUN
    assert evidence == [
        "no soak run (longest run 24.50 h; only a run of experiments/opt-in/soak.json, "
        "with its `soak` block, "
        "counts: a plain run checks no log backups)"
    ]


def test_violations_and_an_incomplete_soak_fail_even_past_24_hours(tmp_path: Path) -> None:
    leak = {**SLOPES[0], "leak": True, "per_hour": 9e7}
    violation = {
        "check": "memory-leak",
        "at": T0 + 80000,
        "text": "tenants/t-0-0 (mssql) memory: floors ... a leak",
    }
    failing = _block(25.0, violations=[violation], slopes=[leak, *SLOPES[1:]])
    status, evidence = _judge(_run(tmp_path, "leaky", hours=25.0, soak=failing))
    assert status == FAIL
    assert evidence[1] == "[leaky](leaky/): tenants/t-0-0 (mssql) memory: floors ... a leak"
    assert "slopes 2 judged, leaks: tenants/t-0-0 memory" in evidence[-1]
    killed = _block(
        30.0, complete=False, incomplete_reason="the soak stopped after 30.00 h (108000 s) of 48.00 h"
    )
    status, evidence = _judge(_run(tmp_path, "killed", hours=30.0, soak=killed))
    assert status == FAIL
    assert any("incomplete: the soak stopped after 30.00 h" in e and "never a pass" in e for e in evidence)


def test_a_clean_lab_soak_reads_lab_only_with_its_hours(tmp_path: Path) -> None:
    """The demo's 3-minute soak: summarised from its folder, then judged."""
    run = _soak(tmp_path / "made", [_round(i) for i in range(18)])
    block = summarize(run)
    assert block is not None and block["violations"] == [] and block["covered_seconds"] == 180.0
    folder = _run(tmp_path, "lab-soak", target=LAB, hours=0.05, soak=block)
    status, evidence = _judge(folder)
    assert status == LAB_ONLY == "PASS (lab only)"
    assert evidence[0].startswith(
        "passed only with runs that are not on a real cluster: [lab-soak](lab-soak/) (lab)"
    )
    assert "lab only, 0.05 h" in evidence[-1]
    assert "drills 1 of 1 run validated (1 planned)" in evidence[-1]
    assert "slopes 6 judged, no leak" in evidence[-1]
    assert evidence[1] == (
        "longest soak: lab only, 0.05 h ([lab-soak](lab-soak/)); "
        "none on a real cluster, where 24 h are required"
    )


def test_a_lab_soak_beside_a_short_cluster_soak_is_still_lab_only(tmp_path: Path) -> None:
    lab = _run(tmp_path, "lab-soak", target=LAB, hours=0.05, soak=_block(0.05))
    cluster = _run(tmp_path, "short", hours=3.2, soak=_block(3.2))
    status, evidence = _judge(cluster, lab)
    assert status == LAB_ONLY
    assert "the cluster runs alone give NOT RUN" in evidence[0]
    assert any(e.startswith("longest soak 3.20 h of the 24 h required") for e in evidence)


def test_a_failing_lab_soak_fails_the_gate_beside_a_passing_cluster_soak(tmp_path: Path) -> None:
    good = _run(tmp_path, "day", hours=24.2, soak=_block(24.2))
    bad = _block(
        0.05, violations=[{"check": "failed-backup-job", "at": T0, "text": "backup Job x failed: y"}]
    )
    status, evidence = _judge(good, _run(tmp_path, "lab-soak", target=LAB, soak=bad))
    assert status == FAIL
    assert "[lab-soak](lab-soak/): backup Job x failed: y" in evidence


def test_the_runs_own_problems_fail_it_and_soak_findings_are_named_once(tmp_path: Path) -> None:
    violation = {"check": "no-acks", "at": T0, "text": "t-0: no acknowledged write in the round at X"}
    summary = {
        "verdict": "NO-GO",
        "violations": ["t-1: 3 acknowledged write(s) lost", f"soak: {violation['text']}"],
    }
    run = _run(tmp_path, "soak", hours=24.0, soak=_block(24.0, violations=[violation]), **summary)
    status, evidence = _judge(run)
    assert status == FAIL
    assert sum("no acknowledged write" in e for e in evidence[:-1]) == 1
    assert "[soak](soak/): t-1: 3 acknowledged write(s) lost" in evidence


def test_soak_block_reads_only_a_dict(tmp_path: Path) -> None:
    assert soak_block(load_run(_run(tmp_path, "a", soak=None))) is None
    assert soak_block(load_run(_run(tmp_path, "b", soak=_block(1.0)))) is not None
