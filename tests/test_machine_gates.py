"""The gates that used to be MANUAL and are now checked: alerting, restore target, Helm.

Each reads what its activity wrote into a run folder (``alerting.json``, ``pitr.json``'s
``precondition`` in the summary, ``helm.json``); these tests write those files as the
activities do and check the verdict and its evidence, including lab-only and fail-closed.
The activities themselves run against real servers in ``test_alert_drill.py`` and in the
lab experiment tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from probes.k8s import helm
from reports.gate_base import FAIL, LAB_ONLY, NOT_RUN, PASS, GateContext
from reports.gates import judge
from reports.gonogo_runs import load_run

CLUSTER = {
    "kind": "cluster",
    "api_server": "https://api.prod.example.com:6443",
    "kubernetes_version": "v1.29.4",
}
LAB = {"kind": "lab", "api_server": "http://127.0.0.1:40000", "kubernetes_version": "v1.30.0-lab"}

DRILL: dict[str, Any] = {
    "prometheus": "http://prom:9090",
    "alertmanager": "http://am:9093",
    "intervals": {"scrape_seconds": 5.0, "evaluation_seconds": 1.0},
    "rules": {
        "expected": ["MSSQLBackupJobFailed", "MSSQLOperatorDown"],
        "loaded": ["MSSQLBackupJobFailed", "MSSQLOperatorDown"],
        "missing": [],
    },
    "backup": {
        "name": "alert-drill-1",
        "job": "alert-drill-1-backup",
        "seconds_to_job_failed": 4.2,
        "job_failed_at": "2026-11-30T07:00:04Z",
        "error": None,
    },
    "fired": {
        "alert": "MSSQLBackupJobFailed",
        "for_seconds": 60.0,
        "deadline_seconds": 70.0,
        "delay_seconds": 64.3,
        "within_deadline": True,
        "pending_at": "2026-11-30T07:00:08Z",
        "received_at": "2026-11-30T07:01:08Z",
        "error": None,
    },
    "cleared": {"at": "2026-11-30T07:01:09Z"},
    "resolved": {"at": "2026-11-30T07:01:15Z", "delay_seconds": 6.1, "error": None},
}


def _run(
    root: Path, name: str, *, target: dict[str, Any] = CLUSTER, fault: str = "alert-drill", **files: Any
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    summary = {
        "run_id": name,
        "verdict": "GO",
        "target": target,
        "tenants": ["t-0"],
        "faults": [],
        "experiment": {"title": fault, "file": f"experiments/{fault}.json", "fault": fault},
        "chaos_status": "completed",
        **files.pop("summary", {}),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    for name_, doc in files.items():
        (folder / name_.replace("_", ".", 1)).write_text(json.dumps(doc))
    return folder


def _judge(gate: str, *folders: Path) -> tuple[str, list[str]]:
    runs = [load_run(f) for f in folders]
    ctx = GateContext(runs, folders[0].parent, folders[0].parent / "doc.md")
    return judge(gate, ctx)


def _with(**changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(DRILL))
    for section, values in changes.items():
        doc[section] = {**doc[section], **values}
    return doc


# --------------------------------------------------------------------------- alerting


def test_a_drill_that_fired_and_resolved_in_time_passes_with_its_times(tmp_path: Path) -> None:
    status, evidence = _judge("alerting", _run(tmp_path, "drill", alerting_json=DRILL))
    assert status == PASS, evidence
    text = " ".join(evidence)
    assert "2 alert rules loaded" in text
    assert "MSSQLBackupJobFailed fired 64.3 s after the Job failed (deadline 70.0 s" in text
    assert "resolved 6.1 s after the failed backup was cleared" in text


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"rules": {"missing": ["MSSQLOperatorDown"]}},
            "alert rules missing from Prometheus: MSSQLOperatorDown",
        ),
        (
            {"fired": {"within_deadline": False, "error": "fired 80.0 s after, over the deadline 70 s"}},
            "over the deadline",
        ),
        (
            {"resolved": {"at": None, "error": "still active in Alertmanager 120 s after it was cleared"}},
            "still active",
        ),
        ({"backup": {"error": "no Job of MSSQLBackup failed within 120 s"}}, "could not fail a backup Job"),
        (
            {"rules": {"unhealthy": ["MSSQLScheduledBackupNotRun: many-to-many matching not allowed"]}},
            "alert rules failing to evaluate: MSSQLScheduledBackupNotRun: many-to-many",
        ),
    ],
)
def test_a_missing_rule_a_late_or_stuck_alert_fails(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    status, evidence = _judge("alerting", _run(tmp_path, "drill", alerting_json=_with(**changes)))
    assert status == FAIL
    assert any(expected in e for e in evidence), evidence


def test_no_drill_is_not_run_and_a_lab_drill_is_lab_only(tmp_path: Path) -> None:
    status, evidence = _judge("alerting", _run(tmp_path, "other", fault="pod-eviction"))
    assert status == NOT_RUN and "no alert drill run" in evidence[0]
    status, evidence = _judge("alerting", _run(tmp_path, "lab-drill", target=LAB, alerting_json=DRILL))
    assert status == LAB_ONLY


def test_a_drill_run_that_went_no_go_fails_the_gate_even_with_a_good_alerting_file(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        "drill",
        alerting_json=DRILL,
        summary={"verdict": "NO-GO", "violations": ["t-0 lost 2 writes"]},
    )
    status, evidence = _judge("alerting", run)
    assert status == FAIL and any("t-0 lost 2 writes" in e for e in evidence)


# --------------------------------------------------------------------------- restore target


def _precondition(**changes: Any) -> dict[str, Any]:
    block = {
        "ok": True,
        "source": "t-0",
        "target": "t-0-absent-1",
        "phase": "Failed",
        "reason": "target instance t-0-absent-1 does not exist: create it first or set createTarget",
        "target_created": False,
        "jobs_created": [],
        "seconds": 0.6,
        "problems": [],
    }
    return {**block, **changes}


def test_a_refused_restore_into_a_missing_target_passes(tmp_path: Path) -> None:
    run = _run(tmp_path, "pitr", fault="pitr-restore", summary={"pitr": {"precondition": _precondition()}})
    status, evidence = _judge("restore-target-exists", run)
    assert status == PASS
    assert "refused after 0.6 s (phase Failed: target instance t-0-absent-1 does not exist" in evidence[0]


def test_an_operator_that_creates_the_target_anyway_fails(tmp_path: Path) -> None:
    problem = "the operator created the target instance t-0-absent-1 although createTarget was false"
    block = _precondition(ok=False, target_created=True, problems=[problem])
    run = _run(tmp_path, "pitr", fault="pitr-restore", summary={"pitr": {"precondition": block}})
    status, evidence = _judge("restore-target-exists", run)
    assert status == FAIL and problem in evidence[0]


def test_no_precondition_check_is_not_run(tmp_path: Path) -> None:
    run = _run(tmp_path, "pitr", fault="pitr-restore", summary={"pitr": {"restore": {"ok": True}}})
    assert _judge("restore-target-exists", run)[0] == NOT_RUN


# --------------------------------------------------------------------------- helm


def _helm(**changes: Any) -> dict[str, Any]:
    doc = {
        "ok": True,
        "helm": "/usr/local/bin/helm",
        "release": "mssql",
        "namespace": "db",
        "instance": "t-0",
        "status": {"status": "deployed", "revision": 3, "chart": "mssql-operator-1.4.2"},
        "manifest_has_instance": True,
        "missing": [],
        "problems": [],
    }
    return {**doc, **changes}


def test_a_deployed_release_that_owns_a_ready_instance_passes(tmp_path: Path) -> None:
    status, evidence = _judge("helm-deploy", _run(tmp_path, "r", helm_json=_helm()))
    assert status == PASS
    assert (
        "release mssql (mssql-operator-1.4.2, revision 3) deployed; it deploys MSSQLInstance t-0"
        in evidence[0]
    )


def test_without_helm_the_gate_says_exactly_what_is_missing(tmp_path: Path) -> None:
    missing = [
        "no `helm` on the PATH: install Helm 3 where the harness runs",
        "no release configured: set helm_release",
    ]
    runs = [_run(tmp_path, f"r{i}", helm_json=_helm(ok=None, missing=missing)) for i in range(2)]
    status, evidence = _judge("helm-deploy", *runs)
    assert status == NOT_RUN
    assert len(evidence) == 1 and "no `helm` on the PATH" in evidence[0] and "r0/helm.json" in evidence[0]


def test_a_failed_release_or_unmarked_instance_fails(tmp_path: Path) -> None:
    problems = [
        "release mssql is failed, not deployed",
        "t-0 has no label app.kubernetes.io/managed-by: Helm (has none)",
    ]
    status, evidence = _judge(
        "helm-deploy", _run(tmp_path, "r", helm_json=_helm(ok=False, problems=problems))
    )
    assert status == FAIL and len(evidence) == 2


def test_the_instance_marks_are_checked_one_by_one() -> None:
    obj = {
        "metadata": {
            "labels": {helm.MANAGED_BY: "Helm"},
            "annotations": {helm.RELEASE_NAME: "other", helm.RELEASE_NAMESPACE: "db"},
        },
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    marks = helm._marks(obj, "status.conditions[type=Ready].status")
    problems = helm._mark_problems(marks, "t-0", "mssql", "db")
    assert problems == ["t-0 annotation meta.helm.sh/release-name is other, not mssql", "t-0 is not Ready"]
    assert helm._mark_problems(helm._marks(None, "x"), "t-0", "mssql", "db") == [
        "MSSQLInstance t-0 does not exist"
    ]
    manifest = "---\nkind: Service\nmetadata: {name: a}\n---\nkind: MSSQLInstance\nmetadata:\n  name: t-0\n"
    assert helm._manifest_has(manifest, "MSSQLInstance", "t-0") and not helm._manifest_has(
        manifest, "MSSQLInstance", "t-1"
    )
    status = helm._status(
        {"version": 3, "info": {"status": "deployed"}, "chart": {"metadata": {"name": "c", "version": "1"}}}
    )
    assert status["status"] == "deployed" and status["chart"] == "c-1" and status["revision"] == 3


def test_the_kept_manifest_holds_no_secret_values() -> None:
    manifest = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sa}\ndata: {password: aHVudGVyMg==}\n"
        "stringData: {token: plain-text-token}\n---\nkind: MSSQLInstance\nmetadata: {name: t-0}\n"
    )
    kept = helm.redact_manifest(manifest)
    assert "aHVudGVyMg==" not in kept and "plain-text-token" not in kept
    assert "password: <redacted>" in kept and "token: <redacted>" in kept
    assert helm._manifest_has(kept, "MSSQLInstance", "t-0")
    assert "not YAML" in helm.redact_manifest("{unclosed: [")


def test_a_refusal_counts_only_when_it_is_about_the_missing_target() -> None:
    from probes.k8s.restore_precondition import about_missing_target

    target = "t-0-absent-20261130"
    assert about_missing_target(f"target instance {target} does not exist: create it first", target)
    assert about_missing_target("restore target not found", target)
    assert not about_missing_target("targetTime is after the latest restorable time", target)
    assert not about_missing_target("source has no full backup", target)
