"""Backups and point-in-time restore in a real lab (``python -m lab up``, 1 tenant, 2 nodes).

One lab for the module; the tests run in file order and build on each other: full and
log backups, a PITR onto a new target that must hold exactly the rows committed up to
the target time (a target no tenant discovery picks up), the restore refusals, a
corrupted backup caught by ``verify`` and skipped by a restore for an older one, a
backup that survives the operator pod being deleted while its Job runs, a restore
failing on damaged WAL (its reason, its target kept stopped and marked), and archived
WAL deleted from the store showing as a gap in the harness's backup chain.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.executor.store import parse_ts
from lab.kubeclient import Kind, KubeClient
from lab.paths import lab_dir, project_root
from tests.test_api_support import wait_for
from tests.test_cluster import _lab, tear_down_lab

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

    def sql(self, sql: str, instance: str | None = None, database: str | None = None) -> str:
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
                *("-U", tenant["user"], "-d", database or tenant["database"], "-c", sql),
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

    def now(self) -> str:
        """The server's clock, RFC 3339 UTC with microseconds."""
        return self.sql(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )

    def switch_wal(self) -> str:
        """Close the current WAL segment and wait until it is archived; its name."""
        name = self.sql("SELECT pg_walfile_name(pg_switch_wal())", database="postgres")
        wait_for((self.store / "wal" / name).is_file, 30)
        return name

    def use_kubeconfig(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this process's Kubernetes clients (the harness's probes) at the lab."""
        from kubernetes.config import kube_config

        monkeypatch.setenv("KUBECONFIG", str(self.home / "kubeconfig"))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(self.home / "kubeconfig"))

    def chain(self, monkeypatch: pytest.MonkeyPatch, folder: Path | None = None) -> dict[str, Any]:
        """The harness's ``backup_chain`` probe, reading the store at ``folder`` (default: the lab's)."""
        from probes.k8s.backup_probes import backup_chain  # where the experiments find it

        self.use_kubeconfig(monkeypatch)
        monkeypatch.delenv("HARNESS_RUN_DIR", raising=False)
        where = str(folder or self.store)
        return backup_chain(self.tenant["name"], NS, configuration={"backups_folder": where})


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
        tear_down_lab(home)


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
    log2 = lab.backup("log-2", "log")
    assert log2["phase"] == "Completed"
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
    # A log backup covers from where the previous one ended, not from the first full backup.
    assert log2["coveredFrom"] == lab.client.get(BACKUPS, "log-1", NS)["status"]["coveredTo"]
    assert log2["coveredRanges"] == [{"from": log2["coveredFrom"], "to": log2["coveredTo"]}]
    assert log2["missingSegments"] == []


def test_a_restore_target_is_not_a_tenant(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from common.crd import CrdCoordinates
    from loadgen.discovery import discover_tenants
    from probes.k8s.probes import instances_ready

    target = lab.client.get(INSTANCES, "restored-1", NS)
    assert target["metadata"]["labels"]["mssql.example.com/role"] == "restore-target"
    kubeconfig = str(lab.home / "kubeconfig")
    found, _ = discover_tenants(NS, CrdCoordinates(), kubeconfig=kubeconfig, secrets_dir=tmp_path / "a")
    assert [t["name"] for t in found] == [lab.tenant["name"]]
    named, _ = discover_tenants(
        NS, CrdCoordinates(), names=["restored-1"], kubeconfig=kubeconfig, secrets_dir=tmp_path / "b"
    )
    assert [t["name"] for t in named] == ["restored-1"]  # asked for by name: found
    selected, _ = discover_tenants(
        NS,
        CrdCoordinates(),
        label_selector="mssql.example.com/role=restore-target",
        kubeconfig=kubeconfig,
        secrets_dir=tmp_path / "c",
    )
    assert [t["name"] for t in selected] == ["restored-1"]  # asked for by label: found
    # The steady state judges the tenants only: a restore target that is not Ready does not count.
    lab.client.patch(
        INSTANCES, "restored-1", {"metadata": {"annotations": {"mssql.example.com/restore-failed": "x"}}}, NS
    )
    try:
        lab.use_kubeconfig(monkeypatch)
        wait_for(
            lambda: (
                (lab.client.get(INSTANCES, "restored-1", NS).get("status") or {}).get("phase")
                == "RestoreFailed"
            ),
            30,
        )
        assert instances_ready(NS) is True
    finally:
        lab.client.patch(
            INSTANCES,
            "restored-1",
            {"metadata": {"annotations": {"mssql.example.com/restore-failed": None}}},
            NS,
        )
    # The lab's tenants file (written by `lab up`) lists the tenants it made, never a restore target.
    up = _lab(lab.home, "up", "--tenants", "1", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    listed = json.loads((lab.home / "tenants.json").read_text())["tenants"]
    assert [t["name"] for t in listed] == [lab.tenant["name"]]
    wait_for(lambda: _answers(lab, "restored-1"), 60)  # started again once the mark is gone


def _answers(lab: Lab, instance: str) -> bool:
    try:
        return bool(lab.sql("SELECT count(*) FROM rows", instance=instance))
    except AssertionError:
        return False


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


def test_a_restore_falls_back_to_an_older_full_backup_when_the_newest_is_damaged(lab: Lab) -> None:
    _insert(lab, 4001, 10)
    time.sleep(0.2)
    target_time = lab.now()
    time.sleep(0.2)
    _insert(lab, 4101, 10)
    assert lab.backup("log-3", "log")["phase"] == "Completed"
    expected = lab.sql(
        f"SELECT string_agg(id::text, ',' ORDER BY id) FROM rows WHERE written_at <= '{target_time}'"
    )
    status = lab.restore("pitr-2", "restored-2", target_time, create=True)
    assert status["phase"] == "Completed", status  # full-2 fails its checksum (the test before)
    assert status["backupId"] == "full-1"
    (fallback,) = [c for c in status["conditions"] if c["type"] == "FallbackToOlderFull"]
    assert fallback["status"] == "True" and "full-2" in fallback["message"]
    assert "checksum mismatch" in fallback["message"] and "full-1" in fallback["message"]
    got = lab.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM rows", instance="restored-2")
    assert got == expected and "4010" in got.split(",") and "4101" not in got.split(",")
    lab.client.delete(INSTANCES, "restored-2", NS)


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


def _flip_byte(path: Path, offset: int) -> bytes:
    """Corrupt one byte of ``path`` (a WAL segment); the original content, to put back."""
    data = path.read_bytes()
    changed = bytearray(data)
    changed[offset] ^= 0xFF
    path.write_bytes(bytes(changed))
    return data


def test_a_restore_from_damaged_wal_says_why_and_keeps_its_target_stopped_and_marked(lab: Lab) -> None:
    lab.backup("log-4", "log")  # the next rows go to a fresh segment, replayed after full-3
    for i in range(5001, 5011):
        lab.sql(f"INSERT INTO rows (id) VALUES ({i})")
    time.sleep(0.2)
    target_time = lab.now()
    time.sleep(0.2)
    _insert(lab, 5101, 10)
    log5 = lab.backup("log-5", "log")
    assert log5["phase"] == "Completed"
    segment = json.loads((lab.store / "log" / "log-5.json").read_text())["segments"][0]
    original = _flip_byte(lab.store / "wal" / segment, 200)  # inside the first records after log-4
    try:
        started = time.monotonic()
        status = lab.restore("pitr-3", "restored-3", target_time, create=True, timeout=180)
        print(f"failed restore reported after {time.monotonic() - started:.1f}s")
    finally:
        (lab.store / "wal" / segment).write_bytes(original)
    assert status["phase"] == "Failed", status
    reason = status["reason"]
    assert "BackoffLimitExceeded" not in reason
    assert "FATAL: recovery ended before configured recovery target was reached" in reason
    assert f"WAL segment {segment} of log backup log-5: checksum mismatch" in reason
    assert {c["type"]: c["message"] for c in status["conditions"]}["Failed"] == reason

    def marked() -> dict[str, Any] | None:
        obj = lab.client.get(INSTANCES, "restored-3", NS)
        return obj if (obj.get("status") or {}).get("phase") == "RestoreFailed" else None

    target = wait_for(marked, 30)
    assert target["metadata"]["annotations"]["mssql.example.com/restore-failed"] == "pitr-3"
    conditions = {c["type"]: c for c in target["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "RestoreFailed"
    assert reason in conditions["RestoreFailed"]["message"]
    time.sleep(3)  # never started: nothing serves the empty database
    assert lab.client.get_or_none("pods", "restored-3-0", NS) is None
    assert lab.client.get("statefulsets", "restored-3", NS)["spec"]["replicas"] == 0
    volume = lab.home / "cluster" / "volumes" / NS / "data-restored-3-0"
    assert (volume / "data.restoring").is_dir() and (volume / "restore-pitr-3.log").is_file()
    # Restoring into it again (the WAL put back) clears the mark.
    expected = lab.sql(
        f"SELECT string_agg(id::text, ',' ORDER BY id) FROM rows WHERE written_at <= '{target_time}'"
    )
    again = lab.restore("pitr-3b", "restored-3", target_time, create=False, timeout=180)
    assert again["phase"] == "Completed", again
    annotations = lab.client.get(INSTANCES, "restored-3", NS)["metadata"].get("annotations") or {}
    assert "mssql.example.com/restore-failed" not in annotations
    assert (
        lab.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM rows", instance="restored-3") == expected
    )


def test_a_wal_segment_missing_from_the_archive_is_a_gap_in_the_chain(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lab.chain(monkeypatch)["gaps"] == []
    _insert(lab, 6001, 10)
    log6 = lab.backup("log-6", "log")
    _insert(lab, 6101, 10)
    lost = lab.switch_wal()  # the first segment log-7 holds
    _insert(lab, 6201, 10)
    log7 = lab.backup("log-7", "log")
    assert lost in json.loads((lab.store / "log" / "log-7.json").read_text())["segments"]
    (lab.store / "wal" / lost).unlink()
    chain = lab.chain(monkeypatch)
    (gap,) = chain["gaps"]
    assert gap["from"] == log6["coveredTo"]  # log-7 starts with the lost segment
    assert parse_ts(gap["to"]) > parse_ts(gap["from"]) and gap["seconds"] > 0
    assert parse_ts(gap["to"]) <= parse_ts(log7["coveredTo"])
    assert parse_ts(chain["latest_restorable"]) <= parse_ts(gap["from"])  # stops before the hole
    assert any(f"WAL segment {lost} is missing from the archive" in p for p in chain["problems"])
    assert "is missing" in lab.verify("log-7").stderr
    # A restore past the hole fails, and says which segment it needed.
    status = lab.restore("pitr-4", "restored-3", log7["coveredTo"], create=False, timeout=180)
    assert status["phase"] == "Failed", status
    assert "recovery ended before configured recovery target was reached" in status["reason"]
    assert f"WAL segment {lost} of log backup log-7 is missing" in status["reason"]

    # Lost before the next log backup: that backup records the hole itself, and the statuses
    # alone (the store not readable from the harness) show it.
    _insert(lab, 6301, 10)
    gone = lab.switch_wal()
    (lab.store / "wal" / gone).unlink()
    _insert(lab, 6401, 10)
    log8 = lab.backup("log-8", "log")
    assert log8["missingSegments"] == [gone]
    assert parse_ts(log8["coveredFrom"]) > parse_ts(log7["coveredTo"])
    assert len(log8["coveredRanges"]) == 2
    blind = lab.chain(monkeypatch, folder=tmp_path / "not-readable")
    assert "store not readable" in blind["checked"]
    assert any(
        parse_ts(g["from"]) <= parse_ts(log8["coveredRanges"][0]["to"])
        and parse_ts(g["to"]) == parse_ts(log8["coveredFrom"])
        for g in blind["gaps"]
    ), blind["gaps"]


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
