"""Monitoring in a real lab: ``python -m lab up`` with Prometheus and Alertmanager (1 tenant, 2 nodes).

One lab for the module, with a small rules file of the test's own (one alert on a failed
Job owned by an MSSQLBackup); the tests run in file order and build on each other:
targets healthy and rules loaded, the fail-job knob failing a backup Job (the series in
Prometheus, the alert in Alertmanager), a completed backup's timestamp from the operator,
the operator found again after its pod is replaced, deleting the failed backup removing its
Job, series and alert, and ``lab down`` leaving no Prometheus or Alertmanager behind.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from common.times import parse_time
from lab.kubeclient import KINDS, Kind, KubeClient
from lab.monitoring import MonitoringEndpoints, monitoring_endpoints
from lab.paths import lab_dir
from tests.test_api_support import wait_for
from tests.test_cluster import _lab, _lab_processes, tear_down_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = "tenants"
BACKUPS = Kind("mssql.example.com", "v1alpha1", "mssqlbackups")
FAIL_JOB = "lab.mssql.example.com/fail-job"
RULES = """\
groups:
  - name: lab-monitoring-test
    rules:
      - alert: LabBackupJobFailed
        expr: >-
          kube_job_failed{condition="true"} == 1
          and on (namespace, job_name) kube_job_owner{owner_kind="MSSQLBackup"}
        labels:
          severity: critical
"""


class Lab:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.client = KubeClient.from_kubeconfig(home / "kubeconfig")
        found = monitoring_endpoints(home)
        assert found is not None, "lab up wrote no endpoints.json"
        self.endpoints: MonitoringEndpoints = found
        self.tenant = json.loads((home / "tenants.json").read_text())["tenants"][0]["name"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        resp = requests.get(f"{self.endpoints.prometheus}/api/v1/query", params={"query": promql}, timeout=5)
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        resp = requests.get(
            f"{self.endpoints.alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=5
        )
        resp.raise_for_status()
        return [a for a in resp.json() if a["labels"].get("alertname") == "LabBackupJobFailed"]

    def backup(self, name: str, annotations: dict[str, str] | None = None) -> None:
        body = {
            "apiVersion": "mssql.example.com/v1alpha1",
            "kind": "MSSQLBackup",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"instance": self.tenant, "type": "full"},
        }
        self.client.create(BACKUPS, body, NS)

    def backup_status(self, name: str, timeout: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.client.get(BACKUPS, name, NS).get("status") or {}
            return status if status.get("phase") in ("Completed", "Failed") else None

        result: dict[str, Any] = wait_for(done, timeout, 0.1)
        return result


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    home = Path(tempfile.mkdtemp(prefix="test-monitoring-", dir=lab_dir()))
    home.chmod(0o755)
    rules = home / "rules.yaml"
    rules.write_text(RULES)
    try:
        up = _lab(home, "up", "--tenants", "1", "--nodes", "2", "--alert-rules", str(rules))
        assert up.returncode == 0, up.stderr
        yield Lab(home)
    finally:
        tear_down_lab(home)


def _targets(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    body = requests.get(f"{lab.endpoints.prometheus}/api/v1/targets", timeout=5).json()
    found: dict[str, list[dict[str, Any]]] = {}
    for target in body["data"]["activeTargets"]:
        found.setdefault(target["labels"]["job"], []).append(target)
    return found


def _healthy(lab: Lab, *jobs: str) -> dict[str, list[dict[str, Any]]] | None:
    found = _targets(lab)
    ok = all(found.get(job) and all(t["health"] == "up" for t in found[job]) for job in jobs)
    return found if ok else None


def test_prometheus_scrapes_the_lab_and_loaded_the_rules(lab: Lab) -> None:
    assert lab.endpoints.scrape_interval_seconds == 5 and lab.endpoints.evaluation_interval_seconds == 1
    assert requests.get(f"{lab.endpoints.prometheus}/-/ready", timeout=5).status_code == 200
    assert requests.get(f"{lab.endpoints.alertmanager}/-/ready", timeout=5).status_code == 200
    found = wait_for(lambda: _healthy(lab, "kube-state-metrics", "mssql-operator", "prometheus"), 30, 0.5)
    assert len(found["mssql-operator"]) == 1
    assert found.get("harness-load", []) == [], "no load runs"
    rules = requests.get(f"{lab.endpoints.prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert [(g["name"], g["file"]) for g in rules] == [("lab-monitoring-test", str(lab.endpoints.rules_file))]
    status = json.loads(_lab(lab.home, "status", "--json").stdout)
    alive = {p["name"]: p["alive"] for p in status["monitoring_processes"]}
    assert alive["prometheus"] and alive["alertmanager"]
    assert status["monitoring"]["prometheus"] == lab.endpoints.prometheus
    # The stand-in's own series reach Prometheus with kube-state-metrics' labels.
    ready = wait_for(
        lambda: lab.query('kube_pod_status_ready{namespace="tenants",condition="true"} == 1'), 20
    )
    assert {r["metric"]["pod"] for r in ready} == {f"{lab.tenant}-0"}
    assert wait_for(
        lambda: lab.query('kube_deployment_status_replicas_available{deployment="mssql-operator"}'), 20
    )


def test_the_fail_job_knob_fails_the_backup_job_and_the_alert_reaches_alertmanager(lab: Lab) -> None:
    began = time.monotonic()
    lab.backup("drill-1", {FAIL_JOB: "disk full (drill)"})

    def job_failed() -> dict[str, Any] | None:
        job = lab.client.get_or_none("jobs", "drill-1-backup", NS)
        conditions = ((job or {}).get("status") or {}).get("conditions") or []
        failed = [c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"]
        return failed[0] if failed else None

    condition = wait_for(job_failed, 20, 0.1)
    took = time.monotonic() - began
    assert condition["reason"] == "BackoffLimitExceeded"
    assert took < 20, f"the Job took {took:.1f}s to fail"
    status = lab.backup_status("drill-1", 20)
    assert status["phase"] == "Failed" and status["reason"].startswith(
        "disk full (drill); job drill-1-backup failed"
    )
    pods = lab.client.list("pods", NS, labels="job-name=drill-1-backup")
    assert len(pods) == 4 and all(p["status"]["phase"] == "Failed" for p in pods)  # backoffLimit 3
    log = lab.client.request("GET", KINDS["pods"].path(NS, pods[0]["metadata"]["name"], "log"))
    assert "executor: failing on purpose: disk full (drill)" in log

    failed = wait_for(
        lambda: lab.query('kube_job_failed{condition="true",job_name="drill-1-backup"} == 1'), 30
    )
    assert failed[0]["metric"]["namespace"] == NS and failed[0]["metric"]["job"] == "kube-state-metrics"
    owner = lab.query('kube_job_owner{owner_kind="MSSQLBackup",job_name="drill-1-backup"}')
    assert [(o["metric"]["owner_name"], o["metric"]["owner_is_controller"]) for o in owner] == [
        ("drill-1", "true")
    ]
    alerts = wait_for(lab.alerts, 40, 0.5)
    assert alerts[0]["labels"]["job_name"] == "drill-1-backup" and alerts[0]["status"]["state"] == "active"


def test_a_completed_backup_sets_the_last_success_timestamp(lab: Lab) -> None:
    lab.backup("full-1")
    status = lab.backup_status("full-1")
    assert status["phase"] == "Completed", status
    end = parse_time(status["endTime"])
    labels = f'namespace="tenants",instance="{lab.tenant}",type="full"'
    promql = f"mssql_backup_last_success_timestamp_seconds{{{labels}}}"

    def current() -> float | None:
        found = lab.query(promql)
        value = float(found[0]["value"][1]) if found else None
        return value if value is not None and end is not None and abs(value - end) < 1e-3 else None

    assert wait_for(current, 30, 0.5) == pytest.approx(end)
    reconciled = lab.query('mssql_operator_reconcile_total{kind="MSSQLBackup"}')
    assert reconciled and float(reconciled[0]["value"][1]) > 0
    ready = lab.query(f'mssql_instance_ready{{instance="{lab.tenant}"}}')
    assert [r["value"][1] for r in ready] == ["1"]


def test_a_replaced_operator_is_found_again(lab: Lab) -> None:
    target = lab.endpoints.targets_dir / "mssql-operator.json"
    before = target.read_text()
    pod = lab.client.list("pods", "mssql-operator", labels="app=mssql-operator")[0]["metadata"]["name"]
    lab.client.delete("pods", pod, "mssql-operator")
    wait_for(lambda: target.exists() and target.read_text() != before, 40, 0.2)
    address = json.loads(target.read_text())[0]["targets"][0]

    def scraped_again() -> bool:
        found = _targets(lab).get("mssql-operator") or []
        return [t["scrapeUrl"] for t in found] == [f"http://{address}/metrics"] and found[0]["health"] == "up"

    wait_for(scraped_again, 40, 0.5)


def test_deleting_the_failed_backup_deletes_its_job_and_resolves_the_alert(lab: Lab) -> None:
    lab.client.delete(BACKUPS, "drill-1", NS)
    wait_for(lambda: lab.client.get_or_none("jobs", "drill-1-backup", NS) is None, 15, 0.1)
    wait_for(lambda: not lab.client.list("pods", NS, labels="job-name=drill-1-backup"), 15, 0.1)
    wait_for(lambda: not lab.query('{__name__=~"kube_job_.*",job_name="drill-1-backup"}'), 30, 0.5)
    wait_for(lambda: not lab.alerts(), 60, 0.5)


def test_up_again_reloads_and_bad_rules_are_refused_before_anything_changes(lab: Lab) -> None:
    prometheus_pid = int((lab.home / "cluster" / "pids" / "prometheus.pid").read_text())
    rules = str(lab.endpoints.rules_file)
    again = _lab(lab.home, "up", "--tenants", "1", "--nodes", "2", "--alert-rules", rules)
    assert again.returncode == 0, again.stderr
    assert monitoring_endpoints(lab.home) == lab.endpoints, "same ports, same files"
    bad = lab.home / "bad-rules.yaml"
    bad.write_text(RULES.replace('condition="true"}', 'condition="true"'))
    refused = _lab(lab.home, "up", "--tenants", "1", "--nodes", "2", "--alert-rules", str(bad))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "promtool check rules" in refused.stderr
    assert int((lab.home / "cluster" / "pids" / "prometheus.pid").read_text()) == prometheus_pid
    groups = requests.get(f"{lab.endpoints.prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert [g["file"] for g in groups] == [rules], "the running Prometheus kept its rules"


def test_lab_down_stops_prometheus_and_alertmanager(lab: Lab) -> None:
    pids = [
        int((lab.home / "cluster" / "pids" / f"{n}.pid").read_text()) for n in ("prometheus", "alertmanager")
    ]
    down = _lab(lab.home, "down", timeout=90)
    assert down.returncode == 0, down.stderr
    assert "prometheus" in down.stdout and "alertmanager" in down.stdout
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert monitoring_endpoints(lab.home) is None
    assert not _lab_processes(lab.home)
    assert not list(lab.endpoints.targets_dir.glob("mssql-operator*.json")), "the operator removed its file"
