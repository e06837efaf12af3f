"""The go/no-go document: checklist gates judged from hand-written run folders, and its CLI.

Each run folder is written by hand in the formats the harness writes: ``summary.json``
(``reports.summary``), a Chaos Toolkit journal (``chaos-journal.json``), ``evidence/``
snapshots, ``rbac.json`` and ``preflight.json``, so every gate's inputs are chosen here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from reports.__main__ import main
from reports.checklist import LINE_GATES, gate_id_for
from reports.combined import combined_rto_plot
from reports.gates import GATES
from reports.gonogo import (
    FAIL,
    GATE_IDS,
    LAB_ONLY,
    MANUAL,
    NOT_RUN,
    PASS,
    UNMAPPED,
    GateResult,
    GoNoGo,
    default_checklist_path,
    evaluate,
    load_run,
    parse_checklist,
    write_gonogo,
)

T0 = 1_700_000_000.0
PROJECT = Path(__file__).resolve().parent.parent
BUNDLED = PROJECT / "reports" / "checklist.md"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TENANTS = ["t-0", "t-1", "t-2"]
CRDS = """NAME                                  CREATED AT
mssqlbackuppolicies.mssql.example.com   2024-01-01T00:00:00Z
mssqlbackups.mssql.example.com          2024-01-01T00:00:00Z
mssqlinstances.mssql.example.com        2024-01-01T00:00:00Z
mssqlrestores.mssql.example.com         2024-01-01T00:00:00Z
"""

# Where a run ran (``summary["target"]``): only a real cluster is production evidence.
CLUSTER = {
    "kind": "cluster",
    "api_server": "https://api.prod.example.com:6443",
    "kubernetes_version": "v1.29.4",
    "nodes": 5,
    "operator_image": "registry.example.com/mssql-operator@sha256:abc",
}
LAB = {
    "kind": "lab",
    "api_server": "https://127.0.0.1:36443",
    "kubernetes_version": "v1.29.0-mssql-lab",
    "nodes": 3,
    "operator_image": "mssql-lab/operator",
    "timing": {"profile": "kubernetes", "description": "kubernetes (node NotReady after 40 s ...)"},
}

# Gate lines of the checklist, by a short name.
CRDS_GATE = "CRDs installed and version-locked in cluster"
HELM = "Helm chart deploys source MSSQL instance successfully"
RUNBOOK = "Runbook validated by a second engineer (peer validation)"
READY = "`MSSQLInstance` reconciles to `Ready`"
POLICY = "`MSSQLBackupPolicy` reconciles to `Ready`"
BACKUPS = "Manual `full` and `log` backup CRs complete successfully"
RESTORE = "PITR restore request completes to target instance"
VALIDATION = "Data validation confirms target matches expected targetTime window"
CONCURRENCY = "Multi-tenant concurrency test (N instances in parallel)"
SOAK = "Long-run soak test (>=24h with periodic log backups)"
FI = "Failure-injection test (operator restart, pod eviction, node restart)"
CORE_RBAC = "Core-managed RBAC is mandatory for operator reconciliation"
RTO = "RTO 1-minute objective must be validated in production-like workload"
RBAC = "RBAC preflight passes (`kubectl auth can-i`) for operator service account"
STORAGE = "StorageClass for source/backup/target PVC is available and healthy"
IMAGES = "Image tags pinned (no floating tag in production)"
RESOURCES = "Resource limits/requests set for MSSQL + operator + executor jobs"
SNAPSHOTS = "`kubectl get` snapshots attached (pods, crds, crs, jobs, pvc)"
LOGS = "Operator logs for backup + restore windows attached"
OUTPUTS = "Source/target data validation outputs attached"
ONE_CLICK = "One-click restore with auto target provisioning"
DOCUMENT = "`tests/07-metrics-go-no-go.md` updated for current run"


# --------------------------------------------------------------------------- run folders


def _result(tenant: str, rto: float | None = 8.0, *, recovered: bool = True, lost: int | None = 0) -> dict:
    return {
        "tenant": tenant,
        "affected": True,
        "recovered": recovered,
        "rto_seconds": rto if recovered else None,
        "max_ack_gap_seconds": rto,
        "gap_open": not recovered,
        "acked_writes": 100,
        "failed_writes": 3,
        "unknown_writes": 1,
        "lost_acked_writes": lost,
        "rpo_seconds": 0.0 if lost is not None else None,
        "note": None,
    }


def _summary(
    run_id: str,
    kind: str,
    *,
    rto: float = 8.0,
    lost: int = 0,
    recovered: bool = True,
    violations: list[str] | None = None,
    hours: float = 0.2,
    experiment: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    results = [_result(t) for t in TENANTS]
    results[1] = _result("t-1", rto, recovered=recovered, lost=lost)
    doc: dict[str, Any] = {
        "schema": 1,
        "run_id": run_id,
        "generated_at_epoch": T0 + hours * 3600 + 30,
        "started_at_epoch": T0,
        "ended_at_epoch": T0 + hours * 3600,
        "target": CLUSTER,
        "objective": {"rto_seconds": 60.0, "rpo_seconds": 0.0},
        "stability_seconds": 5.0,
        "tenants": TENANTS,
        "verdict": "NO-GO" if violations else "GO",
        "violations": violations or [],
        "faults": [
            {
                "name": f"{kind} 1",
                "kind": kind,
                "tenant": "t-1",
                "injected_at_epoch": T0 + 60,
                "ended_at_epoch": T0 + 61,
                "results": results,
            }
        ],
        "totals": {
            t: {"tenant": t, "attempts": 500, "acked": 490, "lost": lost if t == "t-1" else 0}
            for t in TENANTS
        },
    }
    if experiment:
        doc["experiment"] = {"title": f"{kind} under load", "file": f"experiments/{kind}.json", "fault": kind}
        doc["chaos_status"] = "completed"
    doc.update(extra)
    return doc


def _activity(name: str, status: str = "succeeded", error: str | None = None) -> dict[str, Any]:
    run: dict[str, Any] = {"activity": {"name": name, "type": "action"}, "status": status, "output": None}
    if error:
        run["exception"] = [
            "Traceback (most recent call last):\n",
            f"chaoslib.exceptions.ActivityFailed: {error}\n",
        ]
    return run


def _journal(
    *,
    status: str = "completed",
    before: bool = True,
    after: bool = True,
    rollbacks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    def state(met: bool) -> dict[str, Any]:
        probe = {"activity": {"name": "all-instances-ready"}, "status": "succeeded", "tolerance_met": met}
        return {"steady_state_met": met, "probes": [probe]}

    return {
        "status": status,
        "deviated": not after,
        "steady_states": {"before": state(before), "after": state(after), "during": []},
        "run": [_activity("inject-fault")],
        "rollbacks": rollbacks if rollbacks is not None else [_activity("uncordon-nodes")],
    }


RBAC_OK = {
    "service_account": "mssql-operator",
    "required_from": "/charts/mssql-operator/rbac.yaml",
    "checks": [
        {"verb": "get", "resource": "mssqlinstances", "namespace": "db", "allowed": True},
        {"verb": "delete", "resource": "pods", "namespace": "db", "allowed": True},
    ],
}
PREFLIGHT_OK = {
    "storageclass": {"name": "fast-ssd", "default": True, "ok": True},
    "images": [{"name": "operator", "image": "reg/op@sha256:abc", "pinned": True}],
    "resources": [{"name": "mssql", "requests": {"cpu": "1"}, "limits": {"cpu": "2"}, "ok": True}],
}


def _write(
    root: Path,
    run_id: str,
    summary: dict[str, Any],
    *,
    journal: dict[str, Any] | None = None,
    evidence: bool = True,
    rbac: dict[str, Any] | None = None,
    preflight: dict[str, Any] | None = None,
) -> Path:
    folder = root / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    if journal is not None:
        (folder / "chaos-journal.json").write_text(json.dumps(journal))
    if evidence:
        for when in ("before", "after"):
            (folder / "evidence" / when).mkdir(parents=True)
            for name in ("pods", "crs", "jobs", "pvc"):
                (folder / "evidence" / when / f"{name}.txt").write_text("NAME READY\n")
            (folder / "evidence" / when / "crds.txt").write_text(CRDS)
        (folder / "evidence" / "operator.log").write_text("[pod/mssql-operator-0/operator] reconciled\n")
    if rbac is not None:
        (folder / "rbac.json").write_text(json.dumps(rbac))
    if preflight is not None:
        (folder / "preflight.json").write_text(json.dumps(preflight))
    return folder


def _k8s(root: Path, kind: str, *, journal: dict[str, Any] | None = None, **summary: Any) -> Path:
    run_id = f"run-{kind}"
    return _write(
        root,
        run_id,
        _summary(run_id, kind, **summary),
        journal=journal or _journal(),
        rbac=RBAC_OK,
        preflight=PREFLIGHT_OK,
    )


def _passing_fault_runs(root: Path) -> list[Path]:
    return [_k8s(root, kind) for kind in ("operator-restart", "pod-eviction", "node-restart")]


def _judge(root: Path, runs: list[Path], checklist: Path | None = None) -> tuple[GoNoGo, str]:
    out = root / "out" / "07-metrics-go-no-go.md"
    out.parent.mkdir(exist_ok=True)
    result = write_gonogo(runs, out, checklist or BUNDLED)
    return result, out.read_text()


def _gates(result: GoNoGo) -> dict[str, GateResult]:
    return {g.item.text: g for g in result.gates}


def _why(text: str) -> str:
    """The "Why No-Go" section of the document."""
    assert "## Why No-Go" in text
    return text.split("## Why No-Go", 1)[1].split("\n## ", 1)[0]


def _edit_summary(run: Path, **changes: Any) -> None:
    """Change top-level summary keys of a written run; a value of ``...`` removes the key."""
    path = run / "summary.json"
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))


def _go_checklist(root: Path) -> Path:
    """A checklist whose mandatory gates the three passing fault runs all pass."""
    checklist = root / "checklist.md"
    checklist.write_text(
        "# Gates\n\n## 1) Tests\n"
        f"- [ ] {CRDS_GATE}\n- [ ] {READY}\n- [ ] {FI}\n- [ ] {RTO}\n"
        f"## Pre-Go-Live technical gates\n- [ ] {RBAC}\n- [x] {IMAGES}\n"
        "## 4) Planned next improvements\n- [ ] Something nobody checks yet\n"
    )
    return checklist


# --------------------------------------------------------------------------- verdicts


def test_all_faults_pass_but_backups_not_run_is_no_go_listing_what_is_missing(tmp_path: Path) -> None:
    result, text = _judge(tmp_path, _passing_fault_runs(tmp_path))
    gates = _gates(result)

    assert result.verdict == "NO-GO"
    for passed in (CRDS_GATE, READY, CONCURRENCY, FI, CORE_RBAC, RTO, RBAC, STORAGE, IMAGES, RESOURCES):
        assert gates[passed].result == PASS, (passed, gates[passed].evidence)
    assert gates[SNAPSHOTS].result == PASS
    for missing in (POLICY, BACKUPS, RESTORE, VALIDATION, SOAK, OUTPUTS):
        assert gates[missing].result == NOT_RUN, missing
    assert gates[HELM].result in (NOT_RUN, MANUAL)  # no run deployed with Helm
    assert gates[RUNBOOK].result == MANUAL
    assert not any(g.result == FAIL for g in result.gates)

    why = _why(text)
    assert "**FAIL**" not in why
    for missing in (POLICY, BACKUPS, RESTORE, VALIDATION, SOAK, HELM, RUNBOOK):
        assert missing in why
    assert FI not in why and RBAC not in why
    assert "GO requires every mandatory gate to PASS" in text
    assert "N = 3" in " ".join(gates[CONCURRENCY].evidence)
    fi = " ".join(gates[FI].evidence)
    assert "operator-restart: PASS, worst RTO 8.00 s" in fi
    assert "node-drain: NOT RUN" in fi


@pytest.mark.parametrize("consistent", [True, False], ids=["violation-recorded", "summary-says-go"])
def test_rto_over_objective_is_no_go_and_named(tmp_path: Path, consistent: bool) -> None:
    violation = "pod-eviction 1 t-1: RTO 75.0s exceeds the 60s objective"
    runs = _passing_fault_runs(tmp_path)
    (runs[1] / "summary.json").write_text(
        json.dumps(
            _summary(
                "run-pod-eviction", "pod-eviction", rto=75.0, violations=[violation] if consistent else None
            )
        )
    )
    result, text = _judge(tmp_path, runs)
    gates = _gates(result)

    assert result.verdict == "NO-GO"
    assert gates[FI].result == FAIL
    assert gates[RTO].result == FAIL
    assert any("RTO 75.0s exceeds the 60s objective" in e for e in gates[RTO].evidence)
    assert any("pod-eviction: FAIL, worst RTO 75.00 s" in e for e in gates[FI].evidence)
    why = _why(text)
    assert why.index("**FAIL**") < why.index("**NOT RUN**")
    assert "RTO 75.0s exceeds" in why


def test_a_tenant_that_never_recovers_fails_the_rto_gate(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    (runs[2] / "summary.json").write_text(
        json.dumps(
            _summary("run-node-restart", "node-restart", recovered=False, violations=["not recovered"])
        )
    )
    result, _ = _judge(tmp_path, runs)
    gates = _gates(result)
    assert gates[RTO].result == FAIL
    assert any("node-restart 1 t-1: not recovered" in e for e in gates[RTO].evidence)
    assert any("node-restart: FAIL, worst RTO not recovered" in e for e in gates[FI].evidence)


def test_a_lost_acknowledged_write_is_no_go(tmp_path: Path) -> None:
    violation = "operator-restart 1 t-1: 2 acknowledged write(s) lost (loss window 0.4s)"
    runs = _passing_fault_runs(tmp_path)
    (runs[0] / "summary.json").write_text(
        json.dumps(_summary("run-operator-restart", "operator-restart", lost=2, violations=[violation]))
    )
    result, text = _judge(tmp_path, runs)
    gates = _gates(result)

    assert result.verdict == "NO-GO"
    assert gates[FI].result == FAIL
    assert gates[CONCURRENCY].result == FAIL
    assert any("2 acknowledged write(s) lost" in e for e in gates[CONCURRENCY].evidence)
    assert "2 acknowledged write(s) lost" in _why(text)
    assert (
        "| run-operator-restart | operator-restart | cluster, https://api.prod.example.com:6443, Kubernetes "
        "v1.29.4, 5 nodes | operator-restart under load (operator-restart) | 3 | 8.00 s | 2 |" in text
    )


def test_a_failed_rollback_is_no_go_with_its_reason(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    bad = _journal(rollbacks=[_activity("uncordon-nodes", "failed", "node worker-1 still cordoned")])
    (runs[2] / "chaos-journal.json").write_text(json.dumps(bad))
    result, text = _judge(tmp_path, runs)

    assert result.verdict == "NO-GO"
    fi = _gates(result)[FI]
    assert fi.result == FAIL
    assert any(
        "rollback 'uncordon-nodes' failed: chaoslib.exceptions.ActivityFailed: node worker-1" in e
        for e in fi.evidence
    )
    assert "rollback 'uncordon-nodes' failed" in _why(text)


@pytest.mark.parametrize("status", ["failed", "aborted", "interrupted"])
def test_a_chaos_experiment_that_did_not_complete_fails_failure_injection(
    tmp_path: Path, status: str
) -> None:
    runs = _passing_fault_runs(tmp_path)
    (runs[1] / "chaos-journal.json").write_text(json.dumps(_journal(status=status)))
    result, _ = _judge(tmp_path, runs)
    fi = _gates(result)[FI]
    assert result.verdict == "NO-GO"
    assert fi.result == FAIL
    assert any(f"chaos experiment {status}" in e for e in fi.evidence)


def test_a_chaos_failure_in_a_restore_run_also_fails_failure_injection(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    runs.append(_k8s(tmp_path, "pitr-restore", journal=_journal(status="aborted")))
    result, _ = _judge(tmp_path, runs)
    gates = _gates(result)
    assert gates[FI].result == FAIL
    assert gates[RESTORE].result == FAIL
    assert any("chaos experiment aborted" in e for e in gates[RESTORE].evidence)


def test_an_rbac_denial_is_no_go_naming_the_check(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    denied = json.loads(json.dumps(RBAC_OK))
    denied["checks"][1]["allowed"] = False
    (runs[0] / "rbac.json").write_text(json.dumps(denied))
    result, text = _judge(tmp_path, runs)
    gates = _gates(result)

    assert result.verdict == "NO-GO"
    for gate in (RBAC, CORE_RBAC):
        assert gates[gate].result == FAIL
        assert any("mssql-operator cannot delete pods in db" in e for e in gates[gate].evidence)
    assert "mssql-operator cannot delete pods in db" in _why(text)


def test_rbac_checks_read_from_the_deployed_role_cannot_pass_the_gate(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    for run in runs:
        as_deployed = {
            **RBAC_OK,
            "required_from": "ClusterRole mssql-operator (as deployed: a removed verb cannot be seen)",
        }
        (run / "rbac.json").write_text(json.dumps(as_deployed))
    result, _ = _judge(tmp_path, runs)
    gates = _gates(result)
    for gate in (RBAC, CORE_RBAC):
        assert gates[gate].result == NOT_RUN
        assert any("set operator_rbac_file" in e for e in gates[gate].evidence)
    assert result.verdict != "GO"


def test_preflight_failures_are_named(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    preflight = {
        "storageclass": {"name": "slow", "default": False, "ok": False},
        "images": [{"name": "mssql", "image": "mcr/mssql:latest", "pinned": False}],
        "resources": [{"name": "executor", "requests": None, "limits": None, "ok": False}],
    }
    (runs[0] / "preflight.json").write_text(json.dumps(preflight))
    gates = _gates(_judge(tmp_path, runs)[0])
    assert gates[STORAGE].result == FAIL
    assert gates[IMAGES].result == FAIL
    assert any("mssql uses floating image mcr/mssql:latest" in e for e in gates[IMAGES].evidence)
    assert gates[RESOURCES].result == FAIL
    assert any("executor" in e for e in gates[RESOURCES].evidence)


def test_steady_state_not_met_before_the_fault_fails_instance_ready(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    (runs[0] / "chaos-journal.json").write_text(json.dumps(_journal(before=False)))
    gates = _gates(_judge(tmp_path, runs)[0])
    assert gates[READY].result == FAIL
    assert any("probe 'all-instances-ready' out of tolerance" in e for e in gates[READY].evidence)
    assert gates[FI].result == FAIL


def test_missing_snapshots_and_partial_crds(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    (runs[1] / "evidence" / "after" / "jobs.txt").unlink()
    for run in runs:
        for when in ("before", "after"):
            (run / "evidence" / when / "crds.txt").write_text(CRDS.replace("mssqlrestores", "other"))
    gates = _gates(_judge(tmp_path, runs)[0])
    assert gates[SNAPSHOTS].result == FAIL
    assert any("lacks evidence/after/jobs.txt" in e for e in gates[SNAPSHOTS].evidence)
    assert gates[CRDS_GATE].result == NOT_RUN
    assert any("lacks mssqlrestores" in e for e in gates[CRDS_GATE].evidence)


@pytest.mark.parametrize(
    "said",
    [
        "kubectl not found on PATH: install kubectl to capture this snapshot\n",
        "kubectl get mssqlinstances.mssql.example.com -A: timed out after 30 s\n",
        '\n# error: error: the server doesn\'t have a resource type "mssqlinstances"\n',
        "",
    ],
)
def test_a_snapshot_that_holds_only_kubectls_failure_is_no_snapshot(tmp_path: Path, said: str) -> None:
    runs = _passing_fault_runs(tmp_path)
    gates = _gates(_judge(tmp_path, runs)[0])
    assert gates[SNAPSHOTS].result == PASS, gates[SNAPSHOTS].evidence
    (runs[0] / "evidence" / "before" / "crs.txt").write_text(said)
    gates = _gates(_judge(tmp_path, runs)[0])
    assert gates[SNAPSHOTS].result == FAIL, gates[SNAPSHOTS].evidence
    (found,) = gates[SNAPSHOTS].evidence
    assert "evidence/before/crs.txt is no snapshot: " in found
    assert (said.strip() or "empty")[:30] in found
    # kubectl's output followed by a warning-level error is still a snapshot.
    (runs[0] / "evidence" / "before" / "crs.txt").write_text("NAME READY\ntenant-0 True\n" + said)
    assert _gates(_judge(tmp_path, runs)[0])[SNAPSHOTS].result == PASS


def _pitr(**changes: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "backup": {"policy_ready": True, "full": {"ok": True, "name": "full-1"}, "log": True},
        "restore": {"ok": True, "target": "target-0", "target_time": "2023-11-14T22:20:00Z"},
        "validation": {"ok": True, "missing": 0, "extra": 0, "restore_point_error_seconds": 0.8},
    }
    for part, value in changes.items():
        block[part] = value
    return block


GAP = {
    "after": "log-2 [1/2]",
    "before": "log-2 [2/2]",
    "from": "2023-11-14T22:21:00.000000Z",
    "to": "2023-11-14T22:21:30.000000Z",
    "seconds": 30.0,
}
RESTORE_REASON = (
    "restoring full backup full-1: recovery stopped (exit 1): FATAL: recovery ended before configured "
    "recovery target was reached; WAL segment 000000010000000000000009 of log backup log-2: checksum "
    "mismatch (recorded sha256:aa, found sha256:bb)"
)


def _chain(**changes: Any) -> dict[str, Any]:
    chain: dict[str, Any] = {
        "full": 1,
        "log": 2,
        "earliest_restorable": "2023-11-14T22:19:00.000000Z",
        "latest_restorable": "2023-11-14T22:22:00.000000Z",
        "gaps": [],
        "checked": "WAL re-checked in /store",
    }
    return {**chain, **changes}


def test_the_backup_gate_cites_the_chain_and_the_restore_gate_a_fallback(tmp_path: Path) -> None:
    backup = {"policy_ready": True, "full": True, "log": True, "chain": _chain()}
    fallback = "skipped damaged full backup(s) (full-2: checksum mismatch); restored from full-1"
    restore = {"ok": True, "target": "t-0", "fallback": fallback}
    runs = [
        *_passing_fault_runs(tmp_path),
        _k8s(tmp_path, "pitr-restore", pitr=_pitr(backup=backup, restore=restore)),
    ]
    gates = _gates(_judge(tmp_path, runs)[0])
    assert gates[BACKUPS].result == PASS
    assert any(
        "backup chain: 1 full + 2 log backup(s), restorable from 2023-11-14T22:19:00.000000Z "
        "to 2023-11-14T22:22:00.000000Z, no gap (WAL re-checked in /store)" in e
        for e in gates[BACKUPS].evidence
    )
    assert gates[RESTORE].result == PASS
    assert any(fallback in e for e in gates[RESTORE].evidence)


def test_a_passing_restore_run_passes_the_backup_gates(tmp_path: Path) -> None:
    runs = [*_passing_fault_runs(tmp_path), _k8s(tmp_path, "pitr-restore", pitr=_pitr())]
    gates = _gates(_judge(tmp_path, runs)[0])
    for gate in (POLICY, BACKUPS, RESTORE, VALIDATION, OUTPUTS, LOGS):
        assert gates[gate].result == PASS, (gate, gates[gate].evidence)
    assert any("restore point error 0.80 s" in e for e in gates[VALIDATION].evidence)
    assert gates[ONE_CLICK].result == MANUAL
    logs = gates[LOGS].evidence
    assert any(e.endswith("evidence/operator.log) (1 line)") for e in logs), logs


@pytest.mark.parametrize(
    ("said", "why"),
    [
        ("No resources found in mssql-operator namespace.\n", "set operator_namespace and operator_selector"),
        ('\n# error: namespaces "sql-system" not found\n', "only kubectl's words"),
        ("kubectl not found on PATH: install kubectl to capture this snapshot\n", "only kubectl's words"),
        ("", "is empty: the operator pods logged nothing in the run window"),
    ],
)
def test_an_operator_log_without_a_line_from_an_operator_pod_is_not_attached(
    tmp_path: Path, said: str, why: str
) -> None:
    """A wrong operator namespace or selector, or kubectl failing, leaves words in the file, not a log."""
    restore = _k8s(tmp_path, "pitr-restore", pitr=_pitr())
    runs = [*_passing_fault_runs(tmp_path), restore]
    (restore / "evidence" / "operator.log").write_text(said)
    gates = _gates(_judge(tmp_path, runs)[0])
    assert gates[LOGS].result == FAIL, gates[LOGS].evidence
    (found,) = gates[LOGS].evidence
    assert "(pitr-restore)" in found and why in found, found
    # The fault runs' logs (good ones) cover no backup or restore window: not run, never a pass.
    gates = _gates(_judge(tmp_path, runs[:-1])[0])
    assert gates[LOGS].result == NOT_RUN, gates[LOGS].evidence


@pytest.mark.parametrize(
    ("changes", "gate", "text"),
    [
        ({"validation": {"ok": False, "missing": 3, "extra": 0}}, VALIDATION, "missing 3"),
        ({"validation": {"ok": True, "missing": 0, "extra": 2}}, VALIDATION, "extra 2"),
        ({"restore": {"ok": False, "error": "target not found"}}, RESTORE, "target not found"),
        (
            {"backup": {"policy_ready": True, "full": True, "log": {"ok": False}}},
            BACKUPS,
            "log backup failed",
        ),
        ({"backup": {"policy_ready": False, "full": True, "log": True}}, POLICY, "not Ready"),
        (
            {"backup": {"policy_ready": True, "full": True, "log": True, "chain": _chain(gaps=[GAP])}},
            BACKUPS,
            "backup chain has a gap from 2023-11-14T22:21:00.000000Z to 2023-11-14T22:21:30.000000Z",
        ),
        (
            {"backup": {"policy_ready": True, "full": True, "log": True, "chain": _chain(gaps=1)}},
            BACKUPS,
            "a chain with a hole cannot restore to every moment",
        ),
        (
            {
                "backup": {
                    "policy_ready": True,
                    "full": True,
                    "log": True,
                    "chain": _chain(latest_restorable=None),
                }
            },
            BACKUPS,
            "backup chain restores nothing",
        ),
        (
            {"restore": {"ok": False, "target": "t-0", "error": RESTORE_REASON}},
            RESTORE,
            "recovery ended before configured recovery target was reached",
        ),
    ],
)
def test_a_backup_or_restore_failure_is_no_go(tmp_path: Path, changes: dict, gate: str, text: str) -> None:
    runs = [*_passing_fault_runs(tmp_path), _k8s(tmp_path, "pitr-restore", pitr=_pitr(**changes))]
    result, doc = _judge(tmp_path, runs)
    gates = _gates(result)
    assert result.verdict == "NO-GO"
    assert gates[gate].result == FAIL
    assert any(text in e for e in gates[gate].evidence)
    assert text in _why(doc)


def test_a_restore_run_without_results_leaves_the_gates_not_run(tmp_path: Path) -> None:
    runs = [_k8s(tmp_path, "backup-under-chaos")]
    gates = _gates(_judge(tmp_path, runs)[0])
    for gate in (POLICY, BACKUPS, RESTORE, VALIDATION):
        assert gates[gate].result == NOT_RUN
    assert any("recorded no `pitr.backup` results" in e for e in gates[BACKUPS].evidence)


def test_one_click_restore_is_evidenced_by_create_target(tmp_path: Path) -> None:
    restore = {"ok": True, "target": "new-0", "create_target": True}
    runs = [_k8s(tmp_path, "pitr-restore", pitr=_pitr(restore=restore))]
    result, _ = _judge(tmp_path, runs)
    gate = _gates(result)[ONE_CLICK]
    assert gate.result == PASS
    assert not gate.item.mandatory


def test_soak_passes_only_from_a_soak_of_24_hours(tmp_path: Path) -> None:
    long = _write(tmp_path, "long", _summary("long", "freeze", hours=24.5, experiment=False))
    gate = _gates(_judge(tmp_path, [long])[0])[SOAK]
    assert gate.result == NOT_RUN  # a plain long run checks no log backups: no soak
    assert "no soak run (longest run 24.50 h" in gate.evidence[0]
    block = {"planned_seconds": 88200.0, "covered_seconds": 88200.0, "complete": True, "violations": [],
             "rpo_budget_seconds": 900.0, "backup_age_max_seconds": 300.0, "backup_age_max": {"t-0": 300.0},
             "drills": {"planned": 6, "run": 6, "validated": 6, "failed": 0}, "slopes": []}  # fmt: skip
    soak = _write(tmp_path, "soak", _summary("soak", "freeze", hours=24.5, experiment=False, soak=block))
    gate = _gates(_judge(tmp_path, [long, soak])[0])[SOAK]
    assert gate.result == PASS
    assert any("clean soak, on the cluster (24.50 h of 24.50 h planned)" in e for e in gate.evidence)


def test_a_no_go_lab_run_fails_the_concurrency_gate(tmp_path: Path) -> None:
    summary = _summary(
        "lab", "kill", rto=2.0, experiment=False, violations=["t-0: 4 row(s) present that were never written"]
    )
    run = _write(tmp_path, "lab", summary, evidence=False)
    result, text = _judge(tmp_path, [run])
    gate = _gates(result)[CONCURRENCY]
    assert gate.result == FAIL
    assert "4 row(s) present that were never written" in _why(text)
    assert _gates(result)[SNAPSHOTS].result == NOT_RUN


def test_go_when_every_mandatory_gate_passes(tmp_path: Path) -> None:
    result, text = _judge(tmp_path, _passing_fault_runs(tmp_path), _go_checklist(tmp_path))
    assert result.verdict == "GO"
    assert "**Verdict: GO**" in text
    assert "## Why No-Go" not in text
    assert "| PASS (lab only) |" not in text and "cannot make this document GO" not in text
    assert _gates(result)["Something nobody checks yet"].result == MANUAL


# --------------------------------------------------------------------------- lab evidence


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (
            LAB,
            "lab, https://127.0.0.1:36443, Kubernetes v1.29.0-mssql-lab, 3 nodes, timing kubernetes "
            "(not production evidence)",
        ),
        (
            {**LAB, "timing": None},
            "lab, https://127.0.0.1:36443, Kubernetes v1.29.0-mssql-lab, 3 nodes, timing not recorded "
            "(not production evidence)",
        ),
        (
            {"kind": "local", "api_server": None, "kubernetes_version": None, "nodes": None},
            "local, API server",
        ),
        ("kubernetes", "not recorded (older summary: 'kubernetes') (not production evidence)"),
        (..., "not recorded (not production evidence)"),
        ({**CLUSTER, "kind": "Cluster"}, "Cluster, https://api.prod.example.com:6443"),
    ],
    ids=["lab", "lab-without-timing", "local", "old-string", "missing", "not-exactly-cluster"],
)
def test_gates_passed_only_off_a_cluster_read_lab_only_and_block_go(
    tmp_path: Path, target: Any, shown: str
) -> None:
    runs = _passing_fault_runs(tmp_path)
    for run in runs:
        _edit_summary(run, target=target)
    result, text = _judge(tmp_path, runs, _go_checklist(tmp_path))
    gates = _gates(result)

    assert result.verdict == "NO-GO"
    for gate in (CRDS_GATE, READY, FI, RTO, RBAC, IMAGES):
        assert gates[gate].result == LAB_ONLY == "PASS (lab only)", gate
        assert "not on a real cluster" in gates[gate].evidence[0]
        assert "no run on a real cluster" in gates[gate].evidence[0]
    head, why = text.split("## Why No-Go", 1)
    assert text.count("cannot make this document GO") == 1
    assert "Evidence from the embedded lab (PostgreSQL standing in for SQL Server)" in head
    assert "`failure-injection`" in head
    lab_line = next(line for line in why.splitlines() if line.startswith("- **PASS (lab only)** ("))
    assert "`failure-injection`" in lab_line and "not on a real cluster" in lab_line
    assert "0 failed, 6 lab only, 0 not run, 0 manual." in why
    assert "| FAIL |" not in text and "**FAIL**" not in text
    assert shown in text.split("## Runs", 1)[1]


def test_a_gate_the_cluster_runs_cannot_prove_alone_is_lab_only(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    _edit_summary(runs[2], target=LAB)  # node-restart ran only in the lab
    gates = _gates(_judge(tmp_path, runs)[0])

    fi = gates[FI]
    assert fi.result == LAB_ONLY
    assert "[run-node-restart](../runs/run-node-restart/) (lab)" in fi.evidence[0]
    assert "the cluster runs alone give NOT RUN" in fi.evidence[0]
    for proven_on_the_cluster in (READY, RTO, RBAC, IMAGES, CRDS_GATE):
        assert gates[proven_on_the_cluster].result == PASS, proven_on_the_cluster
    assert gates[DOCUMENT].result == FAIL  # and the runs are not one deployment


def test_a_failure_in_the_lab_is_still_a_fail(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    (runs[1] / "summary.json").write_text(
        json.dumps(_summary("run-pod-eviction", "pod-eviction", rto=75.0, violations=["RTO 75.0s"]))
    )
    for run in runs:
        _edit_summary(run, target=LAB)
    result, text = _judge(tmp_path, runs)
    gates = _gates(result)

    assert gates[FI].result == FAIL
    assert gates[RTO].result == FAIL
    assert gates[READY].result == LAB_ONLY
    why = _why(text)
    assert why.index("**FAIL**") < why.index("**PASS (lab only)**") < why.index("**NOT RUN**")


# --------------------------------------------------------------------------- gate ids


def test_every_checklist_line_maps_to_exactly_one_gate_id_and_every_id_is_used() -> None:
    lines = [line[len("- [ ] ") :] for line in BUNDLED.read_text().splitlines() if line.startswith("- [ ]")]
    ids = [gate_id_for(line) for line in lines]
    assert len(lines) == 26
    assert None not in ids
    assert len(set(ids)) == len(ids)  # no two lines share a gate
    assert set(ids) == set(GATE_IDS) == set(GATES)
    assert [i.gate_id for i in parse_checklist(BUNDLED.read_text()).items] == ids
    assert len(LINE_GATES) == len(lines)  # no mapping for a line the checklist no longer has


def test_gate_ids_are_shown_in_the_document(tmp_path: Path) -> None:
    result, text = _judge(tmp_path, _passing_fault_runs(tmp_path))
    assert "| gate | id | result | evidence |" in text
    assert "| `MSSQLInstance` reconciles to `Ready` | `instance-ready` | **PASS** |" in text
    assert f"- **MANUAL** `runbook-peer-validation`: Pre-Go-Live technical gates: {RUNBOOK}: " in _why(text)
    assert _gates(result)[FI].gate_id == "failure-injection"


def test_lines_are_matched_by_their_whole_normalised_text_never_by_words(tmp_path: Path) -> None:
    checklist = tmp_path / "checklist.md"
    checklist.write_text(
        "# Gates\n## Tests\n"
        "- [ ]   `mssqlinstance`   reconciles to `READY`\n"
        "- [ ] RTO dashboard reviewed by the on-call team\n"
        "- [ ] Operator logs shipped to the SIEM\n"
    )
    result, text = _judge(tmp_path, _passing_fault_runs(tmp_path), checklist)
    ready, rto, logs = result.gates

    assert (ready.gate_id, ready.result) == ("instance-ready", PASS)
    for unmapped in (rto, logs):
        assert unmapped.gate_id is None
        assert unmapped.result == MANUAL
        assert unmapped.evidence == [UNMAPPED] == ["no automated check for this line (unmapped)"]
        assert f"- **MANUAL** unmapped: Tests: {unmapped.item.text}: {UNMAPPED}" in _why(text)
    head = text.split("**Verdict", 1)[0]
    assert "RTO dashboard reviewed by the on-call team; Operator logs shipped to the SIEM" in head


# --------------------------------------------------------------------------- this document's gate


def test_the_document_gate_passes_for_finished_runs_on_one_target(tmp_path: Path) -> None:
    gate = _gates(_judge(tmp_path, _passing_fault_runs(tmp_path))[0])[DOCUMENT]
    assert gate.gate_id == "document-updated"
    assert gate.result == PASS
    assert "judges 3 finished run(s)" in gate.evidence[0]
    assert "all on one target: cluster, https://api.prod.example.com:6443" in gate.evidence[0]


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"chaos_status": "running"}, "chaos status running in summary.json"),
        ({"chaos_status": "unknown"}, "chaos status unknown in summary.json"),
        ({"chaos_status": ...}, "chaos status not recorded in summary.json"),
        ({"generated_at_epoch": T0 + 0.2 * 3600 - 10}, "before the run's data ended"),
        ({"generated_at_epoch": ...}, "does not record when it was generated"),
        ({"ended_at_epoch": ...}, "does not record when the run's data ended"),
        ({"target": {**CLUSTER, "api_server": "https://staging:6443"}}, "different targets"),
    ],
    ids=["running", "unknown", "no-status", "stale", "no-generated", "no-end", "mixed-targets"],
)
def test_the_document_gate_fails_for_unfinished_stale_or_mixed_runs(
    tmp_path: Path, change: dict[str, Any], text: str
) -> None:
    runs = _passing_fault_runs(tmp_path)
    _edit_summary(runs[1], **change)
    result, doc = _judge(tmp_path, runs)
    gate = _gates(result)[DOCUMENT]
    assert result.verdict == "NO-GO"
    assert gate.result == FAIL
    assert any(text in e and "run-pod-eviction" in e for e in gate.evidence), gate.evidence
    assert text in _why(doc)


def test_the_document_gate_is_lab_only_for_lab_runs(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    for run in runs:
        _edit_summary(run, target=LAB)
    gate = _gates(_judge(tmp_path, runs)[0])[DOCUMENT]
    assert gate.result == LAB_ONLY
    assert any("all on one target: lab, https://127.0.0.1:36443" in e for e in gate.evidence)


# --------------------------------------------------------------------------- runs that did not complete


@pytest.mark.parametrize("kind", ["pod-eviction", "pitr-restore"])
def test_a_fault_whose_injection_never_completed_fails_its_gate_even_if_the_summary_says_go(
    tmp_path: Path, kind: str
) -> None:
    runs = _passing_fault_runs(tmp_path)
    if kind == "pitr-restore":
        runs.append(_k8s(tmp_path, kind, pitr=_pitr()))
    run = next(r for r in runs if r.name == f"run-{kind}")
    summary = json.loads((run / "summary.json").read_text())
    summary["faults"][0].update(ended_at=None, ended_at_epoch=None)
    assert summary["verdict"] == "GO"
    (run / "summary.json").write_text(json.dumps(summary))
    result, _ = _judge(tmp_path, runs)
    gate = _gates(result)[FI if kind == "pod-eviction" else RESTORE]
    assert gate.result == FAIL
    assert any(f"fault {kind} 1: injection never completed" in e for e in gate.evidence), gate.evidence


@pytest.mark.parametrize(
    "change",
    [{"chaos_status": "aborted"}, {"chaos_status": "failed"}, {"interrupted": True}],
    ids=["summary-aborted", "summary-failed", "interrupted-flag"],
)
def test_a_summary_status_of_an_experiment_that_did_not_complete_fails_even_with_a_completed_journal(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    runs = _passing_fault_runs(tmp_path)
    _edit_summary(runs[1], **change)  # the journal still says completed, the verdict GO
    result, _ = _judge(tmp_path, runs)
    fi = _gates(result)[FI]
    status = change.get("chaos_status", "interrupted")
    assert result.verdict == "NO-GO"
    assert fi.result == FAIL
    assert any("pod-eviction: FAIL" in e and f"chaos experiment {status}" in e for e in fi.evidence)


def test_a_local_run_with_an_unfinished_fault_fails_concurrency(tmp_path: Path) -> None:
    summary = _summary("local", "kill", experiment=False)
    summary["faults"][0]["ended_at_epoch"] = None
    run = _write(tmp_path, "local", summary, evidence=False)
    gate = _gates(_judge(tmp_path, [run])[0])[CONCURRENCY]
    assert gate.result == FAIL
    assert any("fault kill 1: injection never completed" in e for e in gate.evidence)


# --------------------------------------------------------------------------- checklist


def test_every_checklist_line_appears_and_new_lines_are_manual(tmp_path: Path) -> None:
    source = default_checklist_path().read_text()
    extended = source.replace(
        "## Evidence artifacts required",
        "## Security review\n- [ ] Penetration test signed off\n\n## Evidence artifacts required",
    )
    checklist = tmp_path / "extended.md"
    checklist.write_text(extended)
    result, text = _judge(tmp_path, _passing_fault_runs(tmp_path), checklist)

    boxes = [line.split("] ", 1)[1] for line in extended.splitlines() if line.startswith("- [ ]")]
    assert len(boxes) == len(parse_checklist(source).items) + 1 >= 27
    for line in boxes:
        assert f"| {line} |" in text, line
    new = _gates(result)["Penetration test signed off"]
    assert new.result == MANUAL
    assert new.evidence == [UNMAPPED]
    assert new.gate_id is None
    assert new.item.mandatory
    assert "Penetration test signed off" in _why(text)
    assert "## Security review (mandatory)" in text
    assert "Go only if all mandatory gates above are checked." in text


def test_parse_checklist_sections_and_rules() -> None:
    parsed = parse_checklist(BUNDLED.read_text())
    assert parsed.title == "MSSQL Production Gates Checklist"
    sections = list(dict.fromkeys(i.section for i in parsed.items))
    assert sections == [
        "Validated and tested now",
        "In-progress tests",
        "Known constraints",
        "Planned next improvements",
        "Pre-Go-Live technical gates",
        "Evidence artifacts required",
    ]
    assert [i.mandatory for i in parsed.items if i.section == "Planned next improvements"] == [False] * 3
    assert all(i.mandatory for i in parsed.items if i.section != "Planned next improvements")
    assert len(parsed.rules) == 2


def test_the_default_checklist_is_the_projects_own_even_with_one_next_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checklist lying outside the project (here: next to a copy of it) is never picked up."""
    module = sys.modules[default_checklist_path.__module__]
    source = Path(str(module.__file__))
    copy = tmp_path / "project" / "reports" / source.name
    copy.parent.mkdir(parents=True)
    copy.write_text(source.read_text())
    (copy.parent / "checklist.md").write_text(BUNDLED.read_text())
    outside = tmp_path / "shared" / "reference" / "production-gates-checklist.md"
    outside.parent.mkdir(parents=True)
    outside.write_text("# Another checklist\n## Gates\n- [ ] Anything at all\n")
    spec = importlib.util.spec_from_file_location("copied_checklist_module", copy)
    assert spec is not None and spec.loader is not None
    copied = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, copied)
    spec.loader.exec_module(copied)

    assert copied.default_checklist_path().resolve() == (copy.parent / "checklist.md").resolve()
    assert default_checklist_path() == BUNDLED


def test_cli_uses_the_bundled_checklist_unless_told_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = _passing_fault_runs(tmp_path)
    out = tmp_path / "doc.md"
    assert main(["gonogo", *map(str, runs), "--out", str(out)]) == 0
    line = next(x for x in out.read_text().splitlines() if x.startswith("- Checklist: "))
    assert line.endswith("/reports/checklist.md`")
    other = _go_checklist(tmp_path)
    assert main(["gonogo", *map(str, runs), "--out", str(out), "--checklist", str(other)]) == 0
    assert "- Checklist: `checklist.md`" in out.read_text()
    assert capsys.readouterr().out.splitlines()[-1] == f"GO {out}"


# --------------------------------------------------------------------------- document, plot, CLI


def test_document_links_runs_relative_to_itself_and_embeds_the_plot(tmp_path: Path) -> None:
    result, text = _judge(tmp_path, _passing_fault_runs(tmp_path))
    assert "[run-pod-eviction](../runs/run-pod-eviction/)" in text
    assert "[run-pod-eviction/rbac.json](../runs/run-pod-eviction/rbac.json)" in text
    assert "![RTO per tenant per fault across runs](07-metrics-go-no-go-rto.png)" in text
    plot = tmp_path / "out" / "07-metrics-go-no-go-rto.png"
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert "(UTC)" in text.split("\n## ", 1)[0]
    assert len(result.runs) == 3


def test_combined_plot_draws_not_recovered_and_empty_input(tmp_path: Path) -> None:
    summaries = [
        _summary("a", "pod-eviction", rto=75.0),
        _summary("b", "node-restart", recovered=False),
    ]
    path = combined_rto_plot(tmp_path / "rto.png", summaries)
    with Image.open(path) as image:
        assert image.width > 500 and image.height > 300
    empty = combined_rto_plot(tmp_path / "empty.png", [])
    assert empty.read_bytes()[:8] == PNG_MAGIC


def test_cli_writes_the_document_and_prints_verdict_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = _passing_fault_runs(tmp_path)
    out = tmp_path / "07-metrics-go-no-go.md"
    code = main(["gonogo", *map(str, runs), "--out", str(out), "--checklist", str(BUNDLED)])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip() == f"NO-GO {out}"
    assert out.read_text().startswith("# Go/No-Go: MSSQL Production Gates Checklist")


def test_cli_exit_status_does_not_depend_on_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checklist = tmp_path / "checklist.md"
    checklist.write_text(f"# Gates\n## Tests\n- [ ] {FI}\n")
    out = tmp_path / "doc.md"
    code = main(
        ["gonogo", *map(str, _passing_fault_runs(tmp_path)), "--out", str(out), "--checklist", str(checklist)]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == f"GO {out}"


@pytest.mark.parametrize("problem", ["missing-folder", "no-summary", "broken-summary"])
def test_cli_unusable_run_folder_exits_2_with_one_line(tmp_path: Path, problem: str) -> None:
    good = _k8s(tmp_path, "pod-eviction")
    bad = tmp_path / "runs" / "bad"
    if problem != "missing-folder":
        bad.mkdir(parents=True)
    if problem == "broken-summary":
        (bad / "summary.json").write_text("{not json")
    out = tmp_path / "doc.md"
    proc = subprocess.run(
        [sys.executable, "-m", "reports", "gonogo", str(good), str(bad), "--out", str(out)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("reports: ")
    assert str(bad) in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("problem", ["missing-checklist", "missing-out-folder", "checklist-without-boxes"])
def test_cli_bad_checklist_or_out_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    run = _k8s(tmp_path, "pod-eviction")
    checklist = BUNDLED
    out = tmp_path / "doc.md"
    if problem == "missing-checklist":
        checklist = tmp_path / "nope.md"
    elif problem == "missing-out-folder":
        out = tmp_path / "no" / "such" / "doc.md"
    else:
        checklist = tmp_path / "empty.md"
        checklist.write_text("# Gates\n\nNothing to check.\n")
    code = main(["gonogo", str(run), "--out", str(out), "--checklist", str(checklist)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("reports: ")
    assert not out.exists()


def test_load_run_reads_optional_files(tmp_path: Path) -> None:
    run = load_run(_k8s(tmp_path, "node-drain"))
    assert run.is_k8s and run.fault == "node-drain"
    assert run.failure_kinds() == ["node-drain"]
    assert run.rbac == RBAC_OK and run.preflight == PREFLIGHT_OK
    assert run.chaos_status == "completed"
    plain = load_run(_write(tmp_path, "plain", _summary("plain", "kill", experiment=False), evidence=False))
    assert not plain.is_k8s and plain.journal is None and plain.failure_kinds() == []


def test_evaluate_links_relative_to_base(tmp_path: Path) -> None:
    run = load_run(_k8s(tmp_path, "pod-eviction"))
    checklist = parse_checklist(f"# G\n## Tests\n- [ ] {FI}\n")
    result = evaluate(checklist, [run], document=tmp_path / "doc.md")
    gate = result.gates[0]
    assert gate.result == NOT_RUN
    assert any("pod-eviction: PASS" in e and "(runs/run-pod-eviction/)" in e for e in gate.evidence)
    assert any("required but not run: operator-restart, node-restart" in e for e in gate.evidence)


# --------------------------------------------------------------------------- a folder of runs


def _sweep_folder(parent: Path, name: str = "capacity-1") -> Path:
    """A capacity sweep folder whose step run (a run folder of its own) sits two levels below ``parent``."""
    sweep = parent / name
    step = sweep / "steps" / "01-n2-r20-t1"
    step.mkdir(parents=True)
    doc = {
        "kind": "capacity",
        "schema": 1,
        "sweep_id": name,
        "target": CLUSTER,
        "steps": [],
        "boundaries": [],
    }
    (sweep / "capacity.json").write_text(json.dumps(doc))
    (step / "summary.json").write_text(json.dumps(_summary("step-run", "pod-eviction")))
    return sweep


def test_a_folder_of_runs_stands_for_its_run_and_sweep_folders_sorted_by_name(tmp_path: Path) -> None:
    explicit = _passing_fault_runs(tmp_path)
    sweep = _sweep_folder(tmp_path / "runs")
    (tmp_path / "runs" / "logs").mkdir()  # neither a run nor a sweep: not taken
    result, text = _judge(tmp_path, [tmp_path / "runs"])

    assert [r.run_id for r in result.runs] == ["run-node-restart", "run-operator-restart", "run-pod-eviction"]
    assert [s.path for s in result.sweeps] == [sweep]
    assert "step-run" not in text  # a sweep's step runs are one level further down: never runs
    by_hand = _judge(tmp_path, [*sorted(explicit), sweep])[0]
    assert [(g.result, g.gate_id) for g in result.gates] == [(g.result, g.gate_id) for g in by_hand.gates]


def test_cli_takes_a_folder_of_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _passing_fault_runs(tmp_path)
    out = tmp_path / "doc.md"
    assert main(["gonogo", str(tmp_path / "runs"), "--out", str(out), "--checklist", str(BUNDLED)]) == 0
    assert capsys.readouterr().out.strip() == f"NO-GO {out}"
    assert "[run-pod-eviction](runs/run-pod-eviction/)" in out.read_text()


@pytest.mark.parametrize("layout", ["empty", "unrelated", "two-levels-down"])
def test_a_folder_without_runs_or_sweeps_is_one_line_naming_what_was_looked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    if layout == "unrelated":
        (folder / "logs").mkdir()
        (folder / "notes.txt").write_text("hello\n")
    elif layout == "two-levels-down":
        _k8s(folder / "nested", "pod-eviction")  # demo/nested/runs/run-pod-eviction: too deep
    out = tmp_path / "doc.md"
    assert main(["gonogo", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("reports: ")
    assert str(folder / "summary.json") in err
    assert "capacity.json" in err and "sub-folders" in err
    assert not out.exists()


def test_a_run_folder_never_summarised_inside_a_folder_of_runs_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _passing_fault_runs(tmp_path)
    crashed = tmp_path / "runs" / "run-node-drain"
    crashed.mkdir()
    (crashed / "run.json").write_text("{}")
    out = tmp_path / "doc.md"
    assert main(["gonogo", str(tmp_path / "runs"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "run-node-drain" in err and "python -m reports build" in err
    assert not out.exists()


def test_the_gate_reads_kubectls_failures_as_the_evidence_writer_spells_them() -> None:
    """One module spells kubectl's failures for the writer and reads them for the gates."""
    from probes.kubectl_text import ERROR_PREFIX, kubectl_failure, missing_kubectl, timed_out

    assert kubectl_failure(missing_kubectl()) == missing_kubectl().strip()
    assert (
        kubectl_failure(timed_out(["get", "pods", "-A"], 30)) == "kubectl get pods -A: timed out after 30 s"
    )
    assert kubectl_failure(f"\n{ERROR_PREFIX} forbidden\n") == f"{ERROR_PREFIX} forbidden"
    assert kubectl_failure("NAME READY\nx True\n") is None and kubectl_failure(" \n") == "empty"
