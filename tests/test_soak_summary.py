"""A soak's judgement (probes.soak_summary) from hand-written soak folders.

Each folder is written as ``orchestration.soak`` writes it: ``soak/plan.json``, one
``checks.jsonl`` line per round in the contract's format, ``drills.jsonl``, ``end.json``
when the soak finished, and ``run.json``/``faults.jsonl`` where a test needs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from probes.errors import ProbeError
from probes.soak_summary import summarize

T0 = 1_700_000_000.0
CHECK = 10.0
TENANTS = ["t-0", "t-1"]
OPERATOR = "mssql-operator/mssql-operator-7d9f-abcde"
MSSQL = {"t-0": "tenants/t-0-0", "t-1": "tenants/t-1-0"}


def _pods(index: int, **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The operator and one MSSQL pod per tenant; memory a saw-tooth with flat troughs."""
    tooth = (index % 5) * 5e6
    pods: dict[str, dict[str, Any]] = {
        OPERATOR: {
            "role": "operator",
            "uid": "op-1",
            "restarts": 0,
            "memory_bytes": 6e7 + tooth,
            "connections": 4,
        },
        **{
            pod: {
                "role": "mssql",
                "uid": f"uid-{t}",
                "restarts": 0,
                "memory_bytes": 3e8 + tooth,
                "connections": 12,
            }
            for t, pod in MSSQL.items()
        },
    }
    for pod, values in changes.items():
        pods[pod] = {**pods.get(pod, {}), **values}
    return pods


def _round(index: int, **parts: Any) -> dict[str, Any]:
    at = T0 + CHECK * (index + 1)
    line: dict[str, Any] = {
        "kind": "check",
        "at": at,
        "elapsed": CHECK * (index + 1),
        "backups": {
            t: {"last_log_end": at - 15.0, "last_full_end": T0 - 100, "age": 15.0, "error": None}
            for t in TENANTS
        },
        "failed_jobs": [],
        "pods": _pods(index),
        "load": {t: {"acks": 100, "fails": 0, "infos": 0, "p99_ms": 12.5} for t in TENANTS},
        "errors": [],
    }
    line.update(parts)
    return line


DRILL = {
    "kind": "drill",
    "started_at": T0 + 60,
    "ended_at": T0 + 75,
    "tenant": "t-0",
    "target": "t-0-drill-1",
    "target_time": "2023-11-14T22:14:10.000000Z",
    "result": "validated",
    "problems": [],
}


def _soak(
    root: Path,
    rounds: list[dict[str, Any]],
    *,
    drills: list[dict[str, Any]] | None = None,
    end: bool = True,
    plan: dict[str, Any] | None = None,
    faults: list[dict[str, Any]] | None = None,
    rto: float | None = 60.0,
) -> Path:
    run = root / "run"
    folder = run / "soak"
    folder.mkdir(parents=True)
    doc = {
        "seconds": CHECK * len(rounds),
        "check_seconds": CHECK,
        "log_interval_seconds": 20.0,
        "rpo_budget_seconds": 60.0,
        "drill_seconds": 60.0,
        "leak_per_hour": 0.10,
        "started_at": T0,
        "tenants": TENANTS,
        "drills": [60.0],
        "faults": [],
        **(plan or {}),
    }
    (folder / "plan.json").write_text(json.dumps(doc))
    (folder / "checks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    chosen = [DRILL] if drills is None else drills
    (folder / "drills.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    if end:
        ended = rounds[-1]["at"] if rounds else T0
        (folder / "end.json").write_text(json.dumps({"ended_at": ended, "covered_seconds": ended - T0}))
    if rto is not None:
        (run / "run.json").write_text(json.dumps({"run_id": "run", "objective": {"rto_seconds": rto}}))
    if faults:
        (run / "faults.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faults))
    return run


def _checks(block: dict[str, Any]) -> list[str]:
    return [v["check"] for v in block["violations"]]


def _texts(block: dict[str, Any], check: str) -> list[str]:
    return [v["text"] for v in block["violations"] if v["check"] == check]


def test_a_clean_complete_soak_has_no_violation_and_every_number(tmp_path: Path) -> None:
    block = summarize(_soak(tmp_path, [_round(i) for i in range(30)]))
    assert block is not None
    assert block["violations"] == []
    assert block["complete"] is True and block["incomplete_reason"] is None
    assert block["planned_seconds"] == 300.0 and block["covered_seconds"] == 300.0 and block["checks"] == 30
    assert block["backup_age_max_seconds"] == 15.0 and block["backup_age_max"] == {"t-0": 15.0, "t-1": 15.0}
    assert block["failed_backup_jobs"] == [] and block["restarts"] == {}
    assert block["drills"] == {"planned": 1, "run": 1, "validated": 1, "failed": 0}
    assert block["restart_grace"]["seconds"] == 60.0 and "RTO objective" in block["restart_grace"]["from"]
    assert len(block["slopes"]) == 6  # three pods, memory and connections
    assert {s["leak"] for s in block["slopes"]} == {False}
    assert all(s["samples"] == 30 for s in block["slopes"])
    json.dumps(block, allow_nan=False)


def test_no_soak_folder_is_none_and_a_missing_plan_is_one_line(tmp_path: Path) -> None:
    assert summarize(tmp_path) is None
    (tmp_path / "soak").mkdir()
    with pytest.raises(ProbeError, match=r"plan\.json is missing: the soak writes it first"):
        summarize(tmp_path)
    (tmp_path / "soak" / "plan.json").write_text(json.dumps({"seconds": "a day"}))
    with pytest.raises(ProbeError, match="'seconds' must be a positive number, got 'a day'"):
        summarize(tmp_path)


def test_a_steady_memory_rise_in_one_pod_is_a_memory_leak(tmp_path: Path) -> None:
    rounds = []
    for i in range(40):
        leaking = {"memory_bytes": 3e8 + i * 4e6 + (i % 5) * 5e6}  # +4 MB per 10 s: far over 10 %/h
        rounds.append(_round(i, pods=_pods(i, **{MSSQL["t-1"]: leaking})))
    block = summarize(_soak(tmp_path, rounds))
    assert block is not None
    assert _checks(block) == ["memory-leak"]
    (text,) = _texts(block, "memory-leak")
    assert text.startswith("tenants/t-1-0 (mssql) memory: floors") and "a leak" in text
    leaks = [s for s in block["slopes"] if s["leak"]]
    assert [(s["pod"], s["metric"]) for s in leaks] == [("tenants/t-1-0", "memory_bytes")]
    assert leaks[0]["per_hour"] == pytest.approx(4e6 * 360, rel=0.05)


def test_a_failed_backup_job_is_one_violation_however_often_it_is_seen(tmp_path: Path) -> None:
    job = {
        "name": "t-0-log-3-backup",
        "namespace": "tenants",
        "reason": "BackoffLimitExceeded",
        "failed_at": T0 + 42,
    }
    job.update(backup="t-0-log-3", kind="Job")
    gone = {"name": "t-0-log-3", "namespace": "tenants", "reason": "phase Failed", "failed_at": None}
    gone.update(backup="t-0-log-3", kind="MSSQLBackup")
    rounds = [_round(i, failed_jobs=[job] if 4 <= i < 8 else [gone] if i >= 8 else []) for i in range(20)]
    block = summarize(_soak(tmp_path, rounds))
    assert block is not None
    assert _checks(block) == ["failed-backup-job"]
    assert block["violations"][0]["at"] == T0 + 42
    assert _texts(block, "failed-backup-job") == [
        "backup Job tenants/t-0-log-3-backup failed: BackoffLimitExceeded"
    ]
    assert block["failed_backup_jobs"] == ["t-0-log-3-backup"]


def test_a_backup_job_that_failed_before_the_soak_is_not_the_soaks(tmp_path: Path) -> None:
    old = {"name": "t-0-drill-backup", "namespace": "tenants", "reason": "planted by an alerting drill"}
    old.update(failed_at=T0 - 600, backup="t-0-drill", kind="Job")
    block = summarize(_soak(tmp_path, [_round(i, failed_jobs=[old]) for i in range(20)]))
    assert block is not None and block["violations"] == [] and block["failed_backup_jobs"] == []


def test_a_measurement_lost_to_a_planned_eviction_is_no_check_error(tmp_path: Path) -> None:
    rounds = [_round(i) for i in range(30)]
    for i in (15, 16):
        rounds[i]["errors"] = ["tenant t-0: no MSSQL pod in tenants (mssql.example.com/instance=t-0)"]
    fault = {"name": "pod eviction", "kind": "pod-eviction", "injected_at": T0 + 148, "target": "t-0"}
    fault.update(ended_at=T0 + 149, details={})
    block = summarize(_soak(tmp_path, rounds, faults=[fault]))
    assert block is not None and "check-error" not in _checks(block), block["violations"]
    unplanned = summarize(_soak(tmp_path / "unplanned", rounds))
    assert unplanned is not None and "check-error" in _checks(unplanned)


def test_an_unplanned_restart_is_a_violation_and_splits_the_series(tmp_path: Path) -> None:
    rounds = [_round(i) for i in range(30)]
    for i in range(12, 30):
        rounds[i]["pods"][MSSQL["t-0"]]["restarts"] = 1
        rounds[i]["pods"][MSSQL["t-0"]]["memory_bytes"] = 1e8 + (i % 5) * 5e6  # a fresh process: lower
    block = summarize(_soak(tmp_path, rounds))
    assert block is not None
    assert _checks(block) == ["restart"]
    (text,) = _texts(block, "restart")
    assert text.startswith("tenants/t-0-0 (mssql) restarted between 2023-11-14T22:15:20.000Z and")
    assert text.endswith("container restarts 0 → 1")
    assert block["restarts"] == {"tenants/t-0-0": 1} and block["restarts_planned"] == {}
    memory = next(s for s in block["slopes"] if s["pod"] == "tenants/t-0-0" and s["metric"] == "memory_bytes")
    assert memory["samples"] == 18 and memory["leak"] is False  # the longer stretch, after the restart


def test_a_planned_operator_restart_is_no_violation_within_its_grace(tmp_path: Path) -> None:
    new_operator = "mssql-operator/mssql-operator-7d9f-xyzwq"
    rounds = [_round(i) for i in range(30)]
    for i in range(15, 30):
        pods = _pods(i)
        pods[new_operator] = {**pods.pop(OPERATOR), "uid": "op-2"}
        rounds[i]["pods"] = pods
    fault = {"name": "operator restart", "kind": "operator-restart", "injected_at": T0 + 148, "target": None}
    fault.update(ended_at=T0 + 149, details={})
    block = summarize(_soak(tmp_path, rounds, faults=[fault]))
    assert block is not None
    assert block["violations"] == []
    assert block["restarts"] == {new_operator: 1} and block["restarts_planned"] == {new_operator: 1}
    # The same replacement without a planned fault is a restart.
    late = summarize(_soak(tmp_path / "late", rounds, rto=None))
    assert late is not None
    assert (
        _checks(late) == ["restart"]
        and "a new operator pod replaced the one before" in late["violations"][0]["text"]
    )
    assert late["restart_grace"] == {
        "seconds": 120.0,
        "from": "the default 120 s (run.json records no RTO objective)",
    }


def test_a_planned_fault_explains_nothing_after_its_grace(tmp_path: Path) -> None:
    rounds = [_round(i) for i in range(30)]
    for i in range(20, 30):
        rounds[i]["pods"][OPERATOR]["restarts"] = 1
    plan = {"faults": [{"at": 10.0, "action": "restart_operator"}]}  # 200 s before the restart: grace is 60 s
    block = summarize(_soak(tmp_path, rounds, plan=plan))
    assert block is not None
    assert _checks(block) == ["restart"] and block["restarts_planned"] == {}


def test_a_soak_without_end_json_is_incomplete_and_drills_due_later_are_no_violation(tmp_path: Path) -> None:
    rounds = [_round(i) for i in range(12)]
    plan = {"seconds": 86400.0, "drills": [60.0, 14400.0, 28800.0]}
    block = summarize(_soak(tmp_path, rounds, end=False, plan=plan))
    assert block is not None
    assert block["complete"] is False and block["covered_seconds"] == 120.0
    assert block["incomplete_reason"] == (
        "the soak stopped after 0.03 h (120 s) of 24.00 h (86400 s) (no end.json): killed or still running"
    )
    assert block["violations"] == []
    assert block["drills"] == {"planned": 3, "run": 1, "validated": 1, "failed": 0}


def test_planned_drills_that_never_ran_and_a_failed_drill_are_violations(tmp_path: Path) -> None:
    failed = {**DRILL, "result": "failed", "problems": ["restore t-0-drill-1: target not Ready in 600 s"]}
    block = summarize(
        _soak(tmp_path, [_round(i) for i in range(30)], drills=[failed], plan={"drills": [60, 120]})
    )
    assert block is not None
    assert block["drills"] == {"planned": 2, "run": 1, "validated": 0, "failed": 1}
    assert _texts(block, "drill") == [
        "drill 1 (t-0 into t-0-drill-1, to 2023-11-14T22:14:10.000000Z) failed: "
        "restore t-0-drill-1: target not Ready in 600 s",
        "1 of 2 planned drill(s) never ran",
    ]


def test_torn_last_lines_are_skipped_and_a_broken_line_before_is_a_check_error(tmp_path: Path) -> None:
    run = _soak(tmp_path, [_round(i) for i in range(20)], end=False)
    checks = run / "soak" / "checks.jsonl"
    drills = run / "soak" / "drills.jsonl"
    checks.write_text(checks.read_text() + '{"kind":"check","at":17000')
    drills.write_text(drills.read_text() + '{"kind":"drill","star')
    block = summarize(run)
    assert block is not None
    assert block["checks"] == 20 and block["violations"] == [] and block["drills"]["run"] == 1
    lines = checks.read_text().split("\n")
    lines[5] = lines[5][:40]
    checks.write_text("\n".join(lines))
    block = summarize(run)
    assert block is not None
    assert block["checks"] == 19
    assert _texts(block, "check-error") == [
        "soak/checks.jsonl line 6 is not a JSON object: the check it held is lost"
    ]


def test_backup_age_over_the_budget_is_one_violation_per_stretch_with_its_maximum(tmp_path: Path) -> None:
    rounds = [_round(i) for i in range(30)]
    ages = {5: 70.0, 6: 80.0, 7: 90.0, 20: 61.0}
    for i, age in ages.items():
        rounds[i]["backups"]["t-1"]["age"] = age
    rounds[25]["backups"]["t-0"] = {
        "last_log_end": None,
        "last_full_end": None,
        "age": None,
        "error": "forbidden",
    }
    block = summarize(_soak(tmp_path, rounds))
    assert block is not None
    assert _texts(block, "log-backup-age") == [
        "t-1: newest log backup older than the 60 s RPO budget in 3 consecutive rounds from "
        "2023-11-14T22:14:20.000Z to 2023-11-14T22:14:40.000Z, at most 90 s (at 2023-11-14T22:14:40.000Z)",
        "t-1: newest log backup older than the 60 s RPO budget in the round at 2023-11-14T22:16:50.000Z, "
        "at most 61 s (at 2023-11-14T22:16:50.000Z)",
    ]
    assert _texts(block, "check-error") == [
        "t-0: log backup age not measured: forbidden (in the round at 2023-11-14T22:17:40.000Z)"
    ]
    assert block["backup_age_max"] == {"t-0": 15.0, "t-1": 90.0} and block["backup_age_max_seconds"] == 90.0


def test_silent_tenants_round_errors_and_missing_rounds_are_violations(tmp_path: Path) -> None:
    rounds = [_round(i) for i in range(40)]
    for i in (10, 11, 12):
        rounds[i]["load"]["t-0"] = {"acks": 0, "fails": 3, "infos": 1, "p99_ms": None}
    for i in (20, 21):
        rounds[i]["errors"] = ["pods: the API server did not answer in 10 s"]
    del rounds[30:37]  # 80 s without a round: more than check + 60 s
    block = summarize(_soak(tmp_path, rounds, plan={"seconds": 400.0}))
    assert block is not None
    assert _texts(block, "no-acks") == [
        "t-0: no acknowledged write in 3 consecutive rounds from 2023-11-14T22:15:10.000Z to "
        "2023-11-14T22:15:30.000Z (12 failed or unknown-outcome attempts)"
    ]
    errors = _texts(block, "check-error")
    assert errors[0] == (
        "pods: the API server did not answer in 10 s (2 rounds from 2023-11-14T22:16:50.000Z to "
        "2023-11-14T22:17:00.000Z)"
    )
    assert errors[1].startswith(
        "no check round from 2023-11-14T22:18:20.000Z to 2023-11-14T22:19:40.000Z (80 s"
    )


def test_a_complete_soak_that_never_measured_the_pods_cannot_pass(tmp_path: Path) -> None:
    rounds = [_round(i, pods={}) for i in range(10)]
    block = summarize(_soak(tmp_path, rounds))
    assert block is not None
    assert _texts(block, "check-error") == [
        "no operator pod was seen in any check round: its restarts, memory and connections went unmeasured",
        "no mssql pod was seen in any check round: its restarts, memory and connections went unmeasured",
    ]
    unmeasured = [
        _round(i, pods=_pods(i, **{p: {"connections": None} for p in MSSQL.values()})) for i in range(10)
    ]
    block = summarize(_soak(tmp_path / "b", unmeasured))
    assert block is not None
    assert _texts(block, "check-error") == [
        "cannot tell whether the mssql pods leak open connections: no pod's series could be judged"
    ]


def test_a_target_limit_is_listed_and_no_violation(tmp_path: Path) -> None:
    limit = "connections of the operator pods: not measurable on a cluster"
    rounds = [_round(i, pods=_pods(i, **{OPERATOR: {"connections": None}})) for i in range(10)]
    rounds[0]["limits"] = [limit]
    block = summarize(_soak(tmp_path, rounds))
    assert block is not None
    assert block["violations"] == [] and block["limits"] == [limit]
    operator = next(s for s in block["slopes"] if s["pod"] == OPERATOR and s["metric"] == "connections")
    assert operator["leak"] is None and operator["reason"].startswith("not enough samples: 0")


def test_an_evicted_pod_replaced_in_its_window_is_planned_and_a_missing_operator_is_not(
    tmp_path: Path,
) -> None:
    rounds = [_round(i) for i in range(30)]
    for i in range(12, 30):
        rounds[i]["pods"][MSSQL["t-0"]]["uid"] = "uid-t-0-b"
    for i in (20, 21, 22):
        del rounds[i]["pods"][OPERATOR]
    fault = {"name": "evict t-0", "kind": "pod-eviction", "injected_at": T0 + 121, "target": "t-0"}
    fault.update(ended_at=T0 + 122, details={})
    block = summarize(_soak(tmp_path, rounds, faults=[fault]))
    assert block is not None
    assert block["restarts_planned"] == {MSSQL["t-0"]: 1}
    assert _texts(block, "restart") == [
        "no operator pod was running in 3 consecutive rounds from 2023-11-14T22:16:50.000Z to "
        "2023-11-14T22:17:10.000Z"
    ]
