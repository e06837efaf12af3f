"""The soak end to end on a real lab: checks, a drill, a planted failure and leak, a SIGKILL.

One ``chaos run experiments/opt-in/soak.json`` on a 2-tenant lab with log backups every
8 s (budget 30 s), a check every 4 s and a drill at 20 s. While it runs, the test plants
what the soak must catch: a backup whose Job fails (the lab operator's ``fail-job``
knob) and a memory leak in tenant-1's pod (the lab kubelet's ``memory-leak`` knob). A
report is built while the soak runs; then the harness is SIGKILLed before its planned end
and ``python -m reports build`` must still give a report of the part so far: marked
incomplete, with the failed Job and the leak as violations, the drill validated, and every
row the tenants hold present in the journal (nothing lost), and the load gone by itself.
"""

from __future__ import annotations

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

from lab.kubeclient import KubeClient
from lab.operator.protection import BACKUPS
from loadgen.journal import read_journal
from loadgen.secretsdir import sweep_stale_secrets
from loadgen.tenants import load_tenants
from probes.readback import read_back_tenant
from tests.test_backup_experiments import FAST_BACKUPS
from tests.test_experiments import CHAOS, LAB_VARS, Lab, experiment_path, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SOAK_VARS = {
    "soak_seconds": 150,
    "soak_check_seconds": 4,
    "soak_log_interval_seconds": 8,
    "backup_rpo_budget_seconds": 30,
    "soak_drill_seconds": 20,
}
KILL_AFTER = 48  # seconds into the soak: after the drill, enough rounds for a slope, before the end
LEAK = "lab.mssql.example.com/memory-leak"
FAIL_JOB = "lab.mssql.example.com/fail-job"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(
        "test-soak-", "--tenants", "2", "--nodes", "2", "--no-monitoring", env=FAST_BACKUPS
    ) as the_lab:
        yield the_lab


def _wait_for(path: Path, timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"chaos run ended early: {proc.stdout.read() if proc.stdout else ''}"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.5)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _plant_failures(client: KubeClient) -> None:
    pods = client.list("pods", namespace="tenants", labels="mssql.example.com/instance=tenant-1")
    assert pods, "tenant-1 has no pod"
    pod = pods[0]["metadata"]["name"]
    client.patch("pods", pod, {"metadata": {"annotations": {LEAK: "2Mi"}}}, namespace="tenants")
    backup = {
        "apiVersion": f"{BACKUPS.group}/{BACKUPS.version}",
        "kind": "MSSQLBackup",
        "metadata": {"name": "planted-failure", "namespace": "tenants", "annotations": {FAIL_JOB: "planted"}},
        "spec": {"instance": "tenant-0", "type": "log"},
    }
    client.create(BACKUPS, backup, namespace="tenants")


def test_a_killed_soak_reports_its_part_with_the_planted_failure_and_leak(lab: Lab, tmp_path: Path) -> None:
    soak_vars = tmp_path / "soak.vars.json"
    soak_vars.write_text(json.dumps({"configuration": SOAK_VARS}))
    before = set(lab.runs.glob("*"))
    chaos = subprocess.Popen(
        [CHAOS, "--no-version-check", "run", "--var-file", str(LAB_VARS),
         "--var-file", str(soak_vars), str(experiment_path("soak"))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=lab.env, cwd=lab.home,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (made := sorted(set(lab.runs.glob("*")) - before)):
            assert chaos.poll() is None and time.monotonic() < deadline, "no run folder"
            time.sleep(0.5)
        run = made[-1]
        _wait_for(run / "soak" / "plan.json", 120, chaos)
        started = json.loads((run / "soak" / "plan.json").read_text())["started_at"]
        _plant_failures(lab.client())
        _wait_for(run / "soak" / "drills.jsonl", 150, chaos)
        # A report of the part so far, while the soak runs.
        live = subprocess.run([sys.executable, "-m", "reports", "build", str(run)], capture_output=True,
                              text=True, timeout=120, env=lab.env, check=False)  # fmt: skip
        assert live.returncode == 0, live.stderr
        assert json.loads((run / "summary.json").read_text())["soak"]["complete"] is False
        time.sleep(max(0.0, started + KILL_AFTER - time.time()))
        assert chaos.poll() is None, "the soak ended before it was killed"
        load = [
            p for p in psutil.Process(chaos.pid).children(recursive=True) if "locust" in " ".join(p.cmdline())
        ]
        assert load, "no Locust process under the harness"
        os.kill(chaos.pid, signal.SIGKILL)
        chaos.wait(timeout=10)
        # The load notices its harness is gone and stops by itself, journaling its last calls.
        _gone, alive = psutil.wait_procs(load, timeout=30)
        assert not alive, f"Locust outlived its killed harness: {[p.pid for p in alive]}"
    finally:
        if chaos.poll() is None:
            chaos.kill()
            chaos.wait(timeout=10)

    done = subprocess.run(
        [sys.executable, "-m", "reports", "build", str(run)],
        capture_output=True, text=True, timeout=300, env=lab.env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "summary.json").read_text())
    soak = summary["soak"]
    assert soak["complete"] is False and "stopped" in soak["incomplete_reason"]
    assert KILL_AFTER - 10 <= soak["covered_seconds"] <= KILL_AFTER + 5, soak["covered_seconds"]
    assert summary["verdict"] == "NO-GO"
    checks = {v["check"] for v in soak["violations"]}
    assert "failed-backup-job" in checks, soak["violations"]
    leaks = [s for s in soak["slopes"] if s["leak"]]
    assert leaks and all("tenant-1" in s["pod"] for s in leaks), soak["slopes"]
    assert "memory-leak" in checks
    assert soak["drills"]["validated"] >= 1 and soak["drills"]["failed"] == 0, soak["drills"]
    assert soak["backup_age_max_seconds"] is not None
    report = (run / "report.md").read_text()
    assert "INCOMPLETE" in report and "planted-failure" in report
    # Nothing lost: every row the tenants hold for this run is in the journal.
    writes, _ = read_journal(run / "journal")
    journaled = {(w.tenant, w.writer, w.seq) for w in writes}
    run_id = json.loads((run / "run.json").read_text())["run_id"]
    try:
        for tenant in load_tenants(run / "tenants.json"):
            found = read_back_tenant(tenant, run_id)
            assert found.error is None, found.error
            for writer, first, last in found.ranges:
                missing = [s for s in range(first, last + 1) if (tenant.name, writer, s) not in journaled]
                assert not missing, (tenant.name, writer, missing[:5])
    finally:
        # The killed harness could not remove its tenants' passwords; the next run would (this does).
        sweep_stale_secrets()
