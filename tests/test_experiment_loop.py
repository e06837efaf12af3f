"""Every experiment of ``experiments/*.json`` end to end, through the README's own loop.

``chaos run`` takes one experiment, so the README shows the matrix as a shell loop. The
module's fixture runs that exact line (read from the README) with bash, against one lab
(3 nodes, 2 tenants, with its Prometheus and Alertmanager) and the fast timings, in a
folder where ``experiments/`` and ``.venv/`` are the repository's. Every experiment of the
folder must leave exactly one run folder that ends in a summary; then each experiment's
own checks read its folder: the five faults (node loss handled by the lab operator's
out-of-service taint), the operator rollout restart, the PITR
restore, the backup under chaos and the alerting drill, and the go/no-go document over
them. Failure paths are in ``tests/test_experiments.py`` and
``tests/test_backup_experiments.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from common.times import parse_time
from lab.operator.protection import BACKUPS
from lab.paths import project_root
from lab.timing import FAST as FAST_TIMING
from loadgen.journal import read_journal
from orchestration.control import slug
from orchestration.experiment_tree import experiment_files
from probes.k8s import alert_drill
from tests.test_backup_experiments import FAST_BACKUPS, check_restore, exists, no_leftovers
from tests.test_experiments import (
    EXPERIMENTS,
    FAST,
    Lab,
    assert_no_secret_in_runs,
    run_summary,
    running_lab,
    tenant_result,
)

# The loop runs every experiment once (about 200 s here); the first test that asks for it
# waits for all of them.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1600)]
LOOP_SECONDS = 1100  # the loop's own bound; the lab's start and the checks fit in the rest

LOOP_PREFIX = "for e in experiments/*.json;"


def readme_loop() -> str:
    """The loop over ``experiments/*.json``, exactly as the README shows it."""
    lines = [line.strip() for line in (project_root() / "README.md").read_text().splitlines()]
    loops = [line for line in lines if line.startswith(LOOP_PREFIX)]
    assert len(loops) == 1, f"the README shows the loop ({LOOP_PREFIX} ...) once, found {len(loops)}"
    return loops[0]


#: The ``for:`` of every alert rule in the loop's lab. The repository's ``for: 1m`` would make the
#: drill wait a minute; what that minute means is checked by promtool's rule unit tests
#: (tests/test_alert_rules.py), and the drill reads ``for:`` from the server whatever it is.
LOOP_FOR_SECONDS = 10


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    rules = yaml.safe_load(alert_drill.RULES_FILE.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{LOOP_FOR_SECONDS}s"
    rules_file = tmp_path_factory.mktemp("loop-rules") / alert_drill.RULES_FILE.name
    rules_file.write_text(yaml.safe_dump(rules))
    env = {**FAST_BACKUPS, "HARNESS_ALERT_RULES": str(rules_file)}
    with running_lab("test-experiment-loop-", "--tenants", "2", "--nodes", "3", env=env) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def runs(lab: Lab) -> dict[str, Path]:
    """The README's loop, run once; each experiment's run folder by the experiment's name."""
    (lab.home / "experiments").symlink_to(EXPERIMENTS)
    (lab.home / ".venv").symlink_to(Path(sys.executable).parent.parent)
    started = time.monotonic()
    # In a session of its own, so that a timeout stops every chaos run and load it started.
    # LC_ALL=C: bash sorts the glob bytewise, as Python does below.
    loop = subprocess.Popen(
        ["bash", "-c", readme_loop()], cwd=lab.home, env={**lab.env, "LC_ALL": "C"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = loop.communicate(timeout=LOOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(loop.pid, signal.SIGINT)  # chaos run rolls back on SIGINT
        output, _ = loop.communicate(timeout=300)
        pytest.fail(f"the README loop took over {LOOP_SECONDS} s: {output[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(loop.pid, signal.SIGKILL)
    print(f"the README loop: {time.monotonic() - started:.0f} s")
    names = [path.stem for path in sorted(EXPERIMENTS.glob("*.json"))]
    folders = sorted(path for path in lab.runs.iterdir() if path.is_dir())
    # Run ids are "<UTC time>-<slug of experiment_name>"; each experiment names itself after its file.
    made = [folder.name.split("-", 1)[1] for folder in folders]
    assert made == [slug(name) for name in names], (names, made, output[-3000:])
    for folder in folders:
        assert (folder / "summary.json").is_file(), (folder.name, output[-3000:])
    return dict(zip(names, folders, strict=True))


def test_the_readme_loop_runs_every_experiment_of_the_folder_to_a_summary(
    lab: Lab, runs: dict[str, Path]
) -> None:
    # Only experiments in the folder: var files and opt-in searches live apart.
    assert [p.stem for p in experiment_files(EXPERIMENTS) if p.parent == EXPERIMENTS] == list(runs)
    assert "capacity" not in runs and len(runs) >= 8
    for name, run in runs.items():
        summary = run_summary(run)
        assert summary["chaos_status"] == "completed", (name, summary["chaos_status"])
        assert summary["verdict"] == "GO", (name, summary["violations"])
        assert summary["load"]["died_at"] is None and summary["load"]["exit_code"] == 0, name
        # The operator's logs for the run window, from the pods the configuration names.
        operator = json.loads((run / "run.json").read_text())["operator"]
        assert operator == {"namespace": "mssql-operator", "selector": "app=mssql-operator"}, name
        log = (run / "evidence" / "operator.log").read_text()
        assert any(line.startswith("[pod/mssql-operator-") for line in log.splitlines()), (name, log[:300])
    # Nothing left behind by the whole loop: nodes schedulable, no load process.
    assert all(not n["spec"].get("unschedulable") for n in lab.client().list("nodes"))
    running = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    assert not [line for line in running if str(lab.runs) in line]
    assert_no_secret_in_runs(lab)


def complete_run_folder(run: Path, *, faults: bool = True, pitr: bool = False) -> None:
    """Every file a run leaves; ``faults.jsonl`` exactly when something was injected."""
    for name in (
        "report.md",
        "summary.json",
        "metrics.prom",
        "chaos-journal.json",
        "readback.json",
        "rto-rpo.png",
        "evidence/operator.log",
        "rbac.json",
        "preflight.json",
    ):
        assert (run / name).exists(), name
    assert (run / "faults.jsonl").exists() is faults
    assert (run / "pitr.json").exists() is pitr
    for phase in ("before", "after"):
        for snap in ("pods", "crds", "crs", "jobs", "pvc"):
            assert (run / "evidence" / phase / f"{snap}.txt").stat().st_size > 0, (phase, snap)
    for phase in ("before", "after"):  # listed by their configured names, without an error
        crs = (run / "evidence" / phase / "crs.txt").read_text()
        assert "# error" not in crs and "tenant-0" in crs, (phase, crs[:500])
    crds = (run / "evidence" / "before" / "crds.txt").read_text()
    assert "mssqlinstances.mssql.example.com" in crds and "mssqlbackups.mssql.example.com" in crds
    assert list((run / "journal").glob("*.jsonl"))


FAULTS = [
    ("pod-eviction", "pod-eviction", True),
    ("node-drain", "node-drain", True),
    ("operator-restart", "operator-restart", False),
    ("operator-rollout-restart", "operator-restart", False),
    ("node-restart", "node-restart", True),
    ("node-loss", "node-loss", True),
]


@pytest.mark.parametrize(("experiment", "kind", "affected"), FAULTS)
def test_fault_experiment(
    lab: Lab, runs: dict[str, Path], experiment: str, kind: str, affected: bool
) -> None:
    run = runs[experiment]
    summary = run_summary(run)
    complete_run_folder(run)
    assert summary["chaos_status"] == "completed"
    assert summary["experiment"]["fault"] == kind
    assert summary["verdict"] == "GO", summary["violations"]
    (fault,) = summary["faults"]
    assert fault["kind"] == kind
    # tenant-0, or for a node loss another tenant when the operator shares tenant-0's node
    aimed = fault["tenant"] or "tenant-0"
    assert aimed == "tenant-0" or fault["details"]["instead_of"] == "tenant-0", fault
    target = tenant_result(summary, aimed)
    assert target["recovered"] and target["lost_acked_writes"] == 0, (fault, target)
    assert target["affected"] is affected, (fault, target)
    assert target["rto_seconds"] < 60
    assert summary["target"]["kind"] == "lab" and summary["target"]["nodes"] == 3
    assert summary["target"]["kubernetes_version"].endswith("-lab")
    # The first steady-state check came only after every tenant acked for the stability period.
    journal = json.loads((run / "chaos-journal.json").read_text())
    checked = parse_time(journal["steady_states"]["before"]["probes"][0]["start"])
    assert checked is not None
    writes, _ = read_journal(run / "journal")
    for tenant in summary["tenants"]:
        first = min(w.end for w in writes if w.tenant == tenant and w.outcome == "ok")
        assert checked - first >= float(FAST["HARNESS_STABILITY"]) - 0.05, tenant
    if experiment == "node-restart":
        assert target["rto_seconds"] >= 2.5  # the node was down for 3 s
        # RTO counts from the moment the lab signalled the node's processes, not from before
        # `python -m lab restart-node` started up.
        assert fault["details"]["recorded_at"] < fault["injected_at_epoch"] < fault["ended_at_epoch"]
        assert fault["details"]["injection_uncertainty_seconds"] < 1.0
    if experiment == "node-loss":
        assert_node_loss_handled_by_the_operator(lab, run, fault)
    if kind == "operator-restart":
        observed = json.loads((run / "run.json").read_text())
        assert observed["chaos_status"] == "completed"
        assert "operator_reconciling_again_seconds" in (run / "report.md").read_text()


def assert_node_loss_handled_by_the_operator(lab: Lab, run: Path, fault: dict) -> None:
    """The lab operator (LAB_OPERATOR_NODE_LOSS=out-of-service) declared the lost node gone:
    out-of-service taint after the node went NotReady, tenant-0's pod force-deleted by the
    pod garbage collector; the rollback brought the node back without the taint."""
    record = json.loads((run / "node-loss.json").read_text())
    assert record["handling"] == "out-of-service", record
    grace = FAST_TIMING.node_monitor_grace
    assert grace - 1 < record["not_ready_after"] < grace + 3, record
    oos = record["taints"]["node.kubernetes.io/out-of-service:NoExecute"]
    assert record["not_ready_after"] <= oos + 0.5, record
    tenant_pods = [p for p in record["pods"] if p["name"].startswith(str(fault["tenant"]))]
    assert tenant_pods and all(p["how"] == "pod-gc" for p in tenant_pods), record
    assert fault["details"]["handling"] == "out-of-service"
    assert "tainted node.kubernetes.io/out-of-service" in fault["details"]["explanation"]
    node = lab.client().get("nodes", record["node"])
    assert not [t for t in node["spec"].get("taints") or [] if "out-of-service" in t["key"]], node["spec"]
    assert "What happened next: node" in (run / "report.md").read_text()


def assert_lab_only_pass(rows: dict[str, str], *gates: str) -> None:
    """Each gate passed, on the embedded lab only: never a production PASS."""
    for gate in gates:
        assert "| PASS (lab only) |" in rows[gate], rows[gate]


def test_gonogo_over_the_four_faults(lab: Lab, runs: dict[str, Path], tmp_path: Path) -> None:
    four = [runs[name] for name in ("pod-eviction", "node-drain", "operator-restart", "node-restart")]
    rows = lab.gonogo(four, tmp_path / "07-metrics-go-no-go.md")
    assert_lab_only_pass(
        rows,
        "Failure-injection test (operator restart, pod eviction, node restart)",
        "RBAC preflight passes (`kubectl auth can-i`) for operator service account",
        "StorageClass for source/backup/target PVC is available and healthy",
        "Image tags pinned (no floating tag in production)",
        "Resource limits/requests set for MSSQL + operator + executor jobs",
        "`MSSQLInstance` reconciles to `Ready`",
        "`kubectl get` snapshots attached (pods, crds, crs, jobs, pvc)",
    )
    # Backups and restores are not exercised by these four: the verdict must not be GO.
    assert rows["__verdict__"] == "**Verdict: NO-GO**"
    assert "NOT RUN" in rows["PITR restore request completes to target instance"]


def test_the_alert_drill_fires_and_resolves_and_passes_the_alerting_gate(
    lab: Lab, runs: dict[str, Path], tmp_path: Path
) -> None:
    """A backup Job fails on purpose; the repository's alert fires in the lab's real Prometheus
    and reaches its Alertmanager within ``for:`` plus two scrape intervals, then resolves."""
    run = runs["alert-drill"]
    summary = run_summary(run)
    assert summary["verdict"] == "GO", summary["violations"]
    doc = json.loads((run / "alerting.json").read_text())
    assert doc["rules"]["missing"] == [] and "MSSQLBackupJobFailed" in doc["rules"]["loaded"]
    assert doc["backup"]["job"] and doc["backup"]["seconds_to_job_failed"] < 30
    fired = doc["fired"]
    assert fired["for_seconds"] == LOOP_FOR_SECONDS
    assert fired["deadline_seconds"] == LOOP_FOR_SECONDS + 2 * 5
    assert fired["within_deadline"] is True and fired["for_seconds"] <= fired["delay_seconds"], fired
    assert fired["pending_at"] and fired["received_at"]
    assert doc["resolved"]["delay_seconds"] < 60 and doc["resolved"]["at"]
    # Nothing of the drill is left: its backup (and so its Job) is gone.
    assert lab.client().list(BACKUPS, "tenants", labels="mssql-chaos-harness/alert-drill") == []
    rows = lab.gonogo([run], tmp_path / "drill.md")
    alerting = rows["Alerting configured for failed cronjobs and failed restore jobs"]
    assert "| PASS (lab only) |" in alerting and "MSSQLBackupJobFailed fired" in alerting, alerting
    took = json.loads((run / "chaos-journal.json").read_text())["duration"]
    print(
        f"alert drill: {took:.0f} s; fired {fired['delay_seconds']:.1f} s after the Job failed, "
        f"resolved {doc['resolved']['delay_seconds']:.1f} s after it was cleared"
    )


def test_pitr_restore(lab: Lab, runs: dict[str, Path]) -> None:
    run = runs["pitr-restore"]
    summary = run_summary(run)
    complete_run_folder(run, faults=False, pitr=True)
    assert summary["experiment"]["fault"] == "pitr-restore"
    assert summary["faults"] == []  # a restore is not a fault: the source kept writing
    check_restore(summary, run)
    # The operator refused a restore into a missing target without createTarget, and made nothing.
    precondition = summary["pitr"]["precondition"]
    assert precondition["ok"] is True, precondition
    assert precondition["phase"] == "Failed" and "does not exist" in precondition["reason"]
    assert precondition["target_created"] is False and precondition["jobs_created"] == []
    assert not exists(lab, precondition["target"])
    no_leftovers(lab, run)


def test_backup_under_chaos(lab: Lab, runs: dict[str, Path]) -> None:
    run = runs["backup-under-chaos"]
    summary = run_summary(run)
    complete_run_folder(run, faults=True, pitr=True)
    assert summary["experiment"]["fault"] == "backup-under-chaos"
    (fault,) = summary["faults"]
    assert fault["kind"] == "operator-restart"
    check_restore(summary, run)
    full = [b for b in summary["pitr"]["backup"]["backups"] if b["type"] == "full"]
    assert full and all(b["ok"] for b in full)
    integrity = summary["integrity"]
    assert integrity["ok"] is True, integrity
    assert integrity["checksums"]["ok"] is True and integrity["smoke"]["ok"] is True
    assert "verified" in integrity["detail"]
    journal = json.loads((run / "chaos-journal.json").read_text())
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    no_leftovers(lab, run)


def test_gonogo_passes_the_backup_and_restore_gates(lab: Lab, runs: dict[str, Path], tmp_path: Path) -> None:
    both = [runs["pitr-restore"], runs["backup-under-chaos"]]
    rows = lab.gonogo(both, tmp_path / "07-metrics-go-no-go.md")
    assert_lab_only_pass(
        rows,
        "`MSSQLBackupPolicy` reconciles to `Ready`",
        "Manual `full` and `log` backup CRs complete successfully",
        "PITR restore request completes to target instance",
        "Data validation confirms target matches expected targetTime window",
        "Source/target data validation outputs attached",
        "Operator logs for backup + restore windows attached",
        "One-click restore with auto target provisioning",
        "Backup integrity verification job (checksum + restore smoke)",
        "Target instance must exist before PITR restore request",
    )
    assert "missing 0, extra 0" in rows["Data validation confirms target matches expected targetTime window"]
    assert "backup chain: " in rows["Manual `full` and `log` backup CRs complete successfully"]
    assert ", no gap (WAL re-checked in " in rows["Manual `full` and `log` backup CRs complete successfully"]
