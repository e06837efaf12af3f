"""The alert drill's waits against a real Prometheus and Alertmanager, without a cluster.

A prometheus_client endpoint plays kube-state-metrics for one Job (the same metric names
and labels); Prometheus evaluates the repository's own rules (``for:`` shortened to keep
the test short: the expressions are the shipped ones) and sends to a real Alertmanager.
The drill's ``wait_for_alert`` / ``wait_for_alert_resolved`` must see the alert fire within
``for:`` plus two scrape intervals and resolve once the Job's series are gone; a rules file
with an alert Prometheus has not loaded must be reported as missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from lab.engine import free_port
from probes.errors import ProbeError
from probes.k8s import alert_drill
from probes.prometheus_api import Alertmanager, Prometheus
from tests.test_operator import _stop

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
FOR = "3s"
BACKUP = "alert-drill-20261130-000000-000-abcd"
JOB = f"{BACKUP}-backup"

if not (PROMETHEUS and ALERTMANAGER):  # make setup installs both (lab/system-packages.sh)
    pytest.fail(
        "prometheus and prometheus-alertmanager are not installed: run make setup (or apt-get install "
        "prometheus prometheus-alertmanager)",
        pytrace=False,
    )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in 30 s: {log.read_text()[-2000:]}")


def _wait_scraped_and_evaluated(url: str) -> None:
    """Until the exporter was scraped once and every rule group evaluated once (both start late)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        targets = requests.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        groups = requests.get(f"{url}/api/v1/rules", timeout=2).json()["data"]["groups"]
        if (
            targets
            and all(t["health"] == "up" for t in targets)
            and groups
            and all(not g["lastEvaluation"].startswith("0001") for g in groups)
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"{url}: targets not scraped or rules not evaluated within 30 s")


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    failed: Gauge
    owner: Gauge
    rules_file: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("alert-drill")
    registry = CollectorRegistry()
    failed = Gauge(
        "kube_job_failed", "ksm stand-in", ["namespace", "job_name", "condition"], registry=registry
    )
    owner = Gauge(
        "kube_job_owner",
        "ksm stand-in",
        ["namespace", "job_name", "owner_kind", "owner_name", "owner_is_controller"],
        registry=registry,
    )
    exporter, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    rules = yaml.safe_load(alert_drill.RULES_FILE.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    rules_file = home / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    am_port, prom_port = free_port(), free_port()
    (home / "am.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "null",
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "null"}],
            }
        )
    )
    (home / "prom.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "2s", "evaluation_interval": "500ms"},
                "rule_files": [str(rules_file)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [
                    {
                        "job_name": "kube-state-metrics",
                        "honor_labels": True,
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_port}"]}],
                    }
                ],
            }
        )
    )
    am_log, prom_log = home / "am.log", home / "prom.log"
    procs = []
    try:
        with am_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        str(ALERTMANAGER),
                        f"--config.file={home / 'am.yml'}",
                        f"--storage.path={home / 'am-data'}",
                        f"--web.listen-address=127.0.0.1:{am_port}",
                        "--cluster.listen-address=",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        with prom_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        str(PROMETHEUS),
                        f"--config.file={home / 'prom.yml'}",
                        f"--storage.tsdb.path={home / 'prom-data'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_ready(f"http://127.0.0.1:{am_port}", procs[0], am_log)
        _wait_ready(f"http://127.0.0.1:{prom_port}", procs[1], prom_log)
        _wait_scraped_and_evaluated(f"http://127.0.0.1:{prom_port}")
        yield Stack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", failed, owner, rules_file)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        exporter.shutdown()


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_RUN_DIR", str(tmp_path))
    return tmp_path


def _config(stack: Stack) -> dict[str, str]:
    return {"prometheus_url": stack.prometheus, "alertmanager_url": stack.alertmanager}


def test_the_api_reads_rules_intervals_and_alerts(stack: Stack) -> None:
    prom = Prometheus(stack.prometheus)
    names = {r.name for r in prom.rules()}
    assert set(alert_drill.expected_alerts(stack.rules_file)) <= names
    assert all(r.for_seconds == 3.0 for r in prom.rules() if r.name == "MSSQLBackupJobFailed")
    intervals = prom.intervals()
    assert (intervals.scrape, intervals.evaluation) == (2.0, 0.5)
    assert Alertmanager(stack.alertmanager).alerts("NoSuchAlert") == []


def test_missing_rules_are_listed(stack: Stack, run_dir: Path) -> None:
    extra = yaml.safe_load(stack.rules_file.read_text())
    extra["groups"][0]["rules"].append({"alert": "MSSQLNotLoadedAnywhere", "expr": "vector(1)"})
    wanted = run_dir / "wanted.yaml"
    wanted.write_text(yaml.safe_dump(extra))
    assert alert_drill.alert_rules_loaded(str(wanted), configuration=_config(stack)) is False
    doc = json.loads((run_dir / alert_drill.ALERTING_NAME).read_text())
    assert doc["rules"]["missing"] == ["MSSQLNotLoadedAnywhere"]
    assert alert_drill.alert_rules_loaded(str(stack.rules_file), configuration=_config(stack)) is True
    assert json.loads((run_dir / alert_drill.ALERTING_NAME).read_text())["rules"]["missing"] == []


def test_a_failed_backup_job_fires_within_the_deadline_and_resolves(
    stack: Stack, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert_drill._record("backup", {"name": BACKUP, "job": JOB})
    stack.owner.labels("tenants", JOB, "MSSQLBackup", BACKUP, "true").set(1)
    stack.failed.labels("tenants", JOB, "true").set(1)
    stack.failed.labels("tenants", JOB, "false").set(0)
    monkeypatch.setitem(alert_drill._marks, "job_failed", time.monotonic())
    try:
        fired = alert_drill.wait_for_alert(configuration=_config(stack))
    finally:
        stack.failed.remove("tenants", JOB, "true")
        stack.failed.remove("tenants", JOB, "false")
        stack.owner.remove("tenants", JOB, "MSSQLBackup", BACKUP, "true")
    assert fired["within_deadline"] is True, fired
    assert fired["deadline_seconds"] == 3.0 + 2 * 2.0
    assert 3.0 <= fired["delay_seconds"] <= fired["deadline_seconds"] + 1.0
    assert fired["pending_at"] and fired["received_at"]
    monkeypatch.setitem(alert_drill._marks, "cleared", time.monotonic())
    resolved = alert_drill.wait_for_alert_resolved(timeout=30, configuration=_config(stack))
    assert resolved["delay_seconds"] is not None and resolved["delay_seconds"] < 30
    doc = json.loads((run_dir / alert_drill.ALERTING_NAME).read_text())
    assert doc["fired"]["alert"] == "MSSQLBackupJobFailed" and doc["resolved"]["at"]


def test_an_alert_that_never_fires_is_reported_not_waited_for_ever(
    stack: Stack, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert_drill._record("backup", {"name": "alert-drill-never", "job": "alert-drill-never-backup"})
    monkeypatch.setattr(alert_drill, "LATE_GRACE", 1.0)
    # The Job "failed" long ago by the monotonic clock: the deadline has passed already.
    monkeypatch.setitem(alert_drill._marks, "job_failed", time.monotonic() - 10)
    with pytest.raises(ProbeError, match=r"did not fire within \d+ s \(not even pending"):
        alert_drill.wait_for_alert(configuration=_config(stack))
    doc = json.loads((run_dir / alert_drill.ALERTING_NAME).read_text())
    assert doc["fired"]["within_deadline"] is False and doc["fired"]["error"]


def test_unreachable_servers_are_one_clear_line(run_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProbeError, match=r"cannot be reached.*prometheus_url"):
        alert_drill.alert_rules_loaded(configuration={"prometheus_url": dead, "alertmanager_url": dead})


def test_no_servers_configured_outside_a_lab_says_what_to_set(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("HARNESS_PROMETHEUS_URL", "HARNESS_ALERTMANAGER_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(run_dir / "kubeconfig"))
    with pytest.raises(ProbeError, match="set prometheus_url and alertmanager_url"):
        alert_drill.alert_rules_loaded(configuration={})
