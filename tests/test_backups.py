"""Backups and point-in-time restore in a real lab (``python -m lab up``, 1 tenant, 2 nodes).

One lab for the module; the tests run in file order and build on each other: full and
log backups, a PITR onto a new target that must hold exactly the rows committed up to
the target time, the restore refusals, a corrupted backup caught by ``verify``, and a
backup that survives the operator pod being deleted while its Job runs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import processes
from lab.executor.store import parse_ts
from lab.kubeclient import Kind, KubeClient
from lab.paths import lab_dir, project_root
from tests.test_api_support import wait_for
from tests.test_cluster import _lab, _lab_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = "tenants"
BACKUPS = Kind("mssql.example.com", "v1alpha1", "mssqlbackups")
RESTORES = Kind("mssql.example.com", "v1alpha1", "mssqlrestores")
POLICIES = Kind("mssql.example.com", "v1alpha1", "mssqlbackuppolicies")
INSTANCES = Kind("mssql.example.com", "v1alpha1", "mssqlinstances")


class Lab:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.client = KubeClient.from_kubeconfig(home / "kubeconfig")
        self.tenant: dict[str, Any] = json.loads((home / "tenants.json").read_text())["tenants"][0]

    def sql(self, sql: str, instance: str | None = None) -> str:
        tenant = self.tenant
        port, password = tenant["port"], Path(tenant["password_file"]).read_text()
        if instance is not None:
            obj = self.client.get(INSTANCES, instance, NS)
            port = obj["status"]["port"]
            secret = self.client.get("secrets", f"{instance}-credentials", NS)
            password = base64.b64decode(secret["data"]["password"]).decode()
        proc = subprocess.run(
            [
                *("psql", "-X", "-q", "-tA", "-h", "127.0.0.1", "-p", str(port)),
                *("-U", tenant["user"], "-d", tenant["database"], "-c", sql),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": password},
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def backup(self, name: str, kind: str, timeout: float = 90) -> dict[str, Any]:
        body = {"metadata": {"name": name}, "spec": {"instance": self.tenant["name"], "type": kind}}
        self.client.create(
            BACKUPS, {"apiVersion": "mssql.example.com/v1alpha1", "kind": "MSSQLBackup", **body}, NS
        )
        return self.finished(BACKUPS, name, timeout)

    def finished(self, kind: Kind, name: str, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.client.get(kind, name, NS).get("status") or {}
            return status if status.get("phase") in ("Completed", "Failed") else None

        result: dict[str, Any] = wait_for(done, timeout)
        return result

    def restore(
        self, name: str, target: str, when: str, create: bool, timeout: float = 120
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "mssql.example.com/v1alpha1",
            "kind": "MSSQLRestore",
            "metadata": {"name": name},
            "spec": {
                "source": self.tenant["name"],
                "target": target,
                "targetTime": when,
                "createTarget": create,
            },
        }
        self.client.create(RESTORES, body, NS)
        return self.finished(RESTORES, name, timeout)

    def verify(self, backup_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lab.executor", "verify", self.tenant["name"], backup_id, "-n", NS],
            capture_output=True,
            text=True,
            env={**os.environ, "HARNESS_LAB_DIR": str(self.home), "PYTHONPATH": str(project_root())},
            timeout=120,
            check=False,
        )

    @property
    def store(self) -> Path:
        return self.home / "cluster" / "volumes" / NS / f"{self.tenant['name']}-backups"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    home = Path(tempfile.mkdtemp(prefix="test-backups-", dir=lab_dir()))
    home.chmod(0o755)
    try:
        up = _lab(home, "up", "--tenants", "1", "--nodes", "2")
        assert up.returncode == 0, up.stderr
        the_lab = Lab(home)
        the_lab.sql(
            "CREATE TABLE rows (id int PRIMARY KEY, written_at timestamptz DEFAULT clock_timestamp())"
        )
        yield the_lab
    finally:
        if (home / "cluster").exists():
            _lab(home, "down", timeout=90)
        left = _lab_processes(home)
        if left:
            processes.kill_trees(left)
        shutil.rmtree(home, ignore_errors=True)
        assert not left, f"processes left behind: {[p.pid for p in left]}"


def _insert(lab: Lab, first: int, count: int) -> None:
    lab.sql(f"INSERT INTO rows (id) SELECT g FROM generate_series({first}, {first + count - 1}) g")


def test_full_and_log_backups_complete_with_checksums(lab: Lab) -> None:
    _insert(lab, 1, 1000)
    full = lab.backup("full-1", "full")
    assert full["phase"] == "Completed", full
    assert full["backupId"] == "full-1" and full["checksum"].startswith("sha256:")
    assert parse_ts(full["startTime"]) <= parse_ts(full["endTime"]) == parse_ts(full["coveredTo"])
    folder = lab.store / "full" / "full-1"
    assert (folder / "PG_VERSION").is_file() and (folder / "backup_manifest").is_file()
    assert json.loads((folder / "harness-backup.json").read_text())["checksum"] == full["checksum"]
    ok = lab.verify("full-1")
    assert ok.returncode == 0, ok.stderr
    _insert(lab, 1001, 10)
    logged = lab.backup("log-1", "log")
    assert logged["phase"] == "Completed", logged
    meta = json.loads((lab.store / "log" / "log-1.json").read_text())
    assert meta["segments"] and all((lab.store / "wal" / s).is_file() for s in meta["segments"])
    assert parse_ts(logged["coveredTo"]) >= parse_ts(full["endTime"])
    assert lab.verify("log-1").returncode == 0


def test_point_in_time_restore_holds_exactly_the_rows_up_to_the_target_time(lab: Lab) -> None:
    for i in range(2001, 2051):  # one transaction per row
        lab.sql(f"INSERT INTO rows (id) VALUES ({i})")
    time.sleep(0.3)
    target_time = lab.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    )
    time.sleep(0.3)
    for i in range(3001, 3051):
        lab.sql(f"INSERT INTO rows (id) VALUES ({i})")
    assert lab.backup("log-2", "log")["phase"] == "Completed"
    expected = lab.sql(
        f"SELECT string_agg(id::text, ',' ORDER BY id) FROM rows WHERE written_at <= '{target_time}'"
    )
    started = time.monotonic()
    status = lab.restore("pitr-1", "restored-1", target_time, create=True)
    assert status["phase"] == "Completed", status
    print(f"PITR restore of {expected.count(',') + 1} rows: {time.monotonic() - started:.1f}s")
    assert parse_ts(status["achievedRestorePoint"]) <= parse_ts(target_time)
    got = lab.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM rows", instance="restored-1")
    assert got == expected
    assert "3001" not in got.split(",") and "2050" in got.split(",")
    lab.sql("INSERT INTO rows (id) VALUES (999999)", instance="restored-1")  # promoted, writable


def test_restore_refusals_have_actionable_reasons(lab: Lab) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    missing = lab.restore("no-target", "nowhere", now, create=False)
    assert missing["phase"] == "Failed"
    assert "target instance nowhere does not exist: create it first or set createTarget" in missing["reason"]
    early = lab.restore("too-early", "restored-1", "2000-01-01T00:00:00Z", create=False)
    assert early["phase"] == "Failed" and "is before the first full backup" in early["reason"], early


def test_a_corrupted_backup_fails_verification(lab: Lab) -> None:
    assert lab.backup("full-2", "full")["phase"] == "Completed"
    assert lab.verify("full-2").returncode == 0
    victim = lab.store / "full" / "full-2" / "PG_VERSION"
    victim.write_text(victim.read_text() + "x")
    bad = lab.verify("full-2")
    assert bad.returncode == 1 and "checksum mismatch" in bad.stderr


def test_a_backup_survives_the_operator_pod_being_deleted(lab: Lab) -> None:
    _insert(lab, 100000, 50000)
    body = {"metadata": {"name": "full-3"}, "spec": {"instance": lab.tenant["name"], "type": "full"}}
    lab.client.create(
        BACKUPS, {"apiVersion": "mssql.example.com/v1alpha1", "kind": "MSSQLBackup", **body}, NS
    )
    wait_for(
        lambda: any(j["metadata"]["name"] == "full-3-backup" for j in lab.client.list("jobs", namespace=NS)),
        30,
    )
    for pod in lab.client.list("pods", namespace="mssql-operator", labels="app=mssql-operator"):
        lab.client.delete("pods", pod["metadata"]["name"], "mssql-operator")
    status = lab.finished(BACKUPS, "full-3", 120)
    assert status["phase"] == "Completed", status
    assert [j for j in lab.client.list("jobs", namespace=NS) if j["metadata"]["name"].startswith("full-3")]
    assert lab.verify("full-3").returncode == 0


def test_a_policy_becomes_ready_and_takes_backups(lab: Lab) -> None:
    body = {
        "apiVersion": "mssql.example.com/v1alpha1",
        "kind": "MSSQLBackupPolicy",
        "metadata": {"name": "nightly"},
        "spec": {"instance": lab.tenant["name"], "fullSchedule": "0 3 * * *", "logIntervalSeconds": 2},
    }
    lab.client.create(POLICIES, body, NS)

    def logged() -> dict[str, Any] | None:
        status = lab.client.get(POLICIES, "nightly", NS).get("status") or {}
        return status if status.get("lastFull") and status.get("lastLog") else None

    status = wait_for(logged, 60)
    assert status["phase"] == "Ready" and status["failures"] == 0 and status["nextRun"]
