"""The backup and restore experiments' failure paths: the real ``chaos run`` against a real lab.

One lab (2 nodes, 2 tenants, no monitoring) serves the module. A restore refused by the
operator (no target, no createTarget) must fail the restore gate with the operator's
reason. A restore target left behind by a run without rollbacks must not become a tenant
of the next run, whose restore still matches the acknowledged-write journal exactly. The
good path of both experiments runs in ``tests/test_experiment_loop.py`` (the README's
loop), with this module's checks (:func:`check_restore`, :func:`no_leftovers`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab.kubeclient import Kind
from tests.test_experiments import Lab, run_summary, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTANCES = Kind("mssql.example.com", "v1alpha1", "mssqlinstances")
FAST_BACKUPS = {
    "HARNESS_PITR_WRITE_SECONDS": "3",
    "HARNESS_BACKUP_TIMEOUT": "120",
    "HARNESS_RESTORE_TIMEOUT": "180",
}
EPSILON = 0.5


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    up = ("--tenants", "2", "--nodes", "2", "--no-monitoring")
    with running_lab("test-backup-experiments-", *up, env=FAST_BACKUPS) as the_lab:
        yield the_lab


def exists(lab: Lab, name: str) -> bool:
    return lab.client().get_or_none(INSTANCES, name, "tenants") is not None


def check_restore(summary: dict[str, Any], run: Path) -> None:
    pitr = summary["pitr"]
    assert pitr == json.loads((run / "pitr.json").read_text())
    backup, restore, validation = pitr["backup"], pitr["restore"], pitr["validation"]
    assert backup["policy_ready"] is True
    assert backup["full"]["ok"] is True and backup["log"]["ok"] is True, backup
    chain = backup["chain"]
    assert chain["gaps"] == [] and chain["problems"] == [], chain
    assert chain["full"] >= 1 and chain["log"] >= 1 and "WAL re-checked in" in chain["checked"]
    assert chain["latest_restorable"] >= pitr["mark"]["target_time"]  # RFC 3339 UTC: text order is time order
    assert restore["ok"] is True and restore["target"] == "tenant-0-pitr", restore
    assert restore["create_target"] is True and restore["target_time"] == pitr["mark"]["target_time"]
    assert restore["achieved"] and restore["duration_seconds"] > 0
    assert validation["ok"] is True, validation
    assert validation["missing"] == 0 and validation["extra"] == 0
    assert validation["unexpected"] == 0 and validation["changed"] == 0
    assert validation["expected"] >= 20  # seconds of writes at 20/s before the target time
    assert validation["found"] >= validation["expected"]
    # The restore stops at the last commit at or before the target time.
    assert -EPSILON < validation["restore_point_error_seconds"] <= 0.001, validation


def no_leftovers(lab: Lab, run: Path) -> None:
    assert not exists(lab, "tenant-0-pitr")  # the rollback deleted the restore target
    assert not exists(lab, "tenant-0-verify")
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(run) in " ".join(p.info["cmdline"] or [])]


def test_a_refused_restore_fails_the_restore_gate_with_the_reason(lab: Lab, tmp_path: Path) -> None:
    done, run = lab.chaos(
        "pitr-restore",
        env={"HARNESS_RESTORE_CREATE_TARGET": "false", "HARNESS_RESTORE_TARGET": "absent-target"},
        timeout=420,
    )
    assert run is not None, done.stderr[-3000:]
    summary = run_summary(run)
    restore = summary["pitr"]["restore"]
    assert restore["ok"] is False and restore["create_target"] is False
    assert "does not exist: create it first or set createTarget" in restore["error"]
    assert summary["pitr"]["validation"]["ok"] is False
    journal = json.loads((run / "chaos-journal.json").read_text())
    failed = {r["activity"]["name"] for r in journal["run"] if r["status"] == "failed"}
    assert {"restore-to-target-time", "validate-restored-data"} <= failed
    assert not exists(lab, "absent-target")
    rows = lab.gonogo([run], tmp_path / "gonogo.md")
    assert "**FAIL**" in rows["PITR restore request completes to target instance"]
    assert "createTarget" in rows["PITR restore request completes to target instance"]
    assert "**FAIL**" in rows["Data validation confirms target matches expected targetTime window"]


def test_a_restore_target_left_by_a_run_without_rollbacks_is_not_a_tenant_of_the_next_run(lab: Lab) -> None:
    done, kept = lab.chaos("pitr-restore", "--rollback-strategy", "never", timeout=420)
    assert done.returncode == 0 and kept is not None, done.stderr[-3000:]
    left = lab.client().get(INSTANCES, "tenant-0-pitr", "tenants")
    done, run = lab.chaos("pitr-restore", timeout=420)
    assert done.returncode == 0 and run is not None, done.stderr[-3000:]
    tenants = json.loads((run / "tenants.json").read_text())["tenants"]
    assert [t["name"] for t in tenants] == ["tenant-0", "tenant-1"]  # not put under load
    summary = run_summary(run)
    assert summary["verdict"] == "GO", summary["violations"]  # nor judged
    assert summary["tenants"] == ["tenant-0", "tenant-1"]
    check_restore(summary, run)
    no_leftovers(lab, run)
    assert (left["metadata"].get("labels") or {}).get("mssql.example.com/role") == "restore-target"
