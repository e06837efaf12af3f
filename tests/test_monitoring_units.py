"""The lab's monitoring without a lab: configs checked by the real promtool/amtool, the checks
``lab up`` makes before starting anything, the endpoints reader, the operator's metrics and
target file, the load's file_sd target file, and the fail-job knob's Job and executor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lab.__main__ import main as lab_main
from lab.errors import LabError
from lab.executor import main as executor_main
from lab.monitoring import MonitoringEndpoints, monitoring_endpoints
from lab.monitoring.alertmanager_config import write_alertmanager_config
from lab.monitoring.prometheus_config import prometheus_config, write_prometheus_config
from lab.monitoring.stack import MISSING_HINT, as_record, default_rules_file, preflight
from lab.operator.jobs import FAIL_JOB_ANNOTATION, backup_job
from lab.operator.metrics import TARGET_FILE, OperatorMetrics, remove_target, write_target
from lab.paths import project_root
from loadgen.metrics import LoadMetrics

RULES = """\
groups:
  - name: lab-unit
    rules:
      - alert: BackupJobFailed
        expr: kube_job_failed{condition="true"} == 1
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def _config_args(tmp_path: Path, rules: Path) -> dict[str, object]:
    return {
        "prometheus_port": 9190,
        "alertmanager_port": 9193,
        "ksm_port": 9191,
        "targets_dir": tmp_path / "targets",
        "rules_file": rules,
    }


def test_prometheus_config_passes_promtool_and_has_the_lab_jobs(tmp_path: Path, rules: Path) -> None:
    path = write_prometheus_config(tmp_path / "prometheus.yml", **_config_args(tmp_path, rules))
    check = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(path.read_text())
    assert config["global"]["scrape_interval"] == "5s" and config["global"]["evaluation_interval"] == "1s"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"kube-state-metrics", "mssql-operator", "harness-load", "prometheus"}
    assert jobs["kube-state-metrics"]["static_configs"][0]["targets"] == ["127.0.0.1:9191"]
    assert jobs["mssql-operator"]["honor_labels"] is True, "the operator's `instance` label must survive"
    assert jobs["mssql-operator"]["file_sd_configs"][0]["files"] == [
        str(tmp_path / "targets/mssql-operator*.json")
    ]
    assert jobs["harness-load"]["file_sd_configs"][0]["files"] == [str(tmp_path / "targets/load-*.json")]
    assert config["rule_files"] == [str(rules)]
    alerting = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == ["127.0.0.1:9193"]
    assert prometheus_config(**_config_args(tmp_path, rules)) == config  # type: ignore[arg-type]


def test_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    path = write_alertmanager_config(tmp_path / "alertmanager.yml")
    check = subprocess.run(
        ["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(path.read_text())
    assert config["receivers"] == [{"name": "lab-drill"}], "one receiver, no integrations"
    assert config["route"]["group_wait"] == "1s" and config["route"]["group_interval"] == "5s"


def test_preflight_names_the_fix_in_one_line(
    tmp_path: Path, rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARNESS_ALERT_RULES", raising=False)
    plan = preflight(rules)
    assert plan.groups == ("lab-unit",) and plan.rules_file == rules.resolve()
    assert default_rules_file() == project_root() / "deploy" / "alerts" / "mssql-harness.rules.yaml"
    with pytest.raises(LabError) as missing_rules:
        preflight(tmp_path / "nope.yaml")
    assert "nope.yaml is missing" in str(missing_rules.value) and "--no-monitoring" in str(
        missing_rules.value
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [\n")
    with pytest.raises(LabError, match="not readable YAML"):
        preflight(bad)
    bad.write_text("rules: []\n")
    with pytest.raises(LabError, match="no `groups:` list"):
        preflight(bad)
    bad.write_text(RULES.replace('condition="true"}', 'condition="true"'))
    with pytest.raises(LabError) as bad_promql:
        preflight(bad)
    message = str(bad_promql.value)
    assert "fails `promtool check rules`" in message and "BackupJobFailed" in message and "\n" not in message
    monkeypatch.setenv("HARNESS_ALERTMANAGER_BIN", str(tmp_path / "no-alertmanager"))
    with pytest.raises(LabError) as missing_bin:
        preflight(rules)
    assert str(missing_bin.value).endswith(MISSING_HINT) and "\n" not in str(missing_bin.value)
    monkeypatch.setenv("HARNESS_ALERT_RULES", str(rules))
    assert default_rules_file() == rules


def test_lab_up_without_prometheus_fails_in_one_line_before_anything_starts(
    tmp_path: Path, rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARNESS_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("HARNESS_PROMETHEUS_BIN", str(tmp_path / "no-prometheus"))
    assert lab_main(["up", "--alert-rules", str(rules)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lab up: ") and err.endswith(MISSING_HINT), err
    assert not (tmp_path / "lab" / "cluster").exists() and not (tmp_path / "lab" / "monitoring").exists()
    monkeypatch.delenv("HARNESS_PROMETHEUS_BIN")
    assert lab_main(["up", "--alert-rules", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.yaml is missing" in err, err
    assert not (tmp_path / "lab" / "cluster").exists()


def test_monitoring_endpoints_reader(tmp_path: Path) -> None:
    assert monitoring_endpoints(tmp_path) is None
    endpoints = MonitoringEndpoints(
        prometheus="http://127.0.0.1:1",
        alertmanager="http://127.0.0.1:2",
        scrape_interval_seconds=5,
        evaluation_interval_seconds=5,
        targets_dir=tmp_path / "monitoring" / "targets",
        rules_file=tmp_path / "rules.yaml",
        kube_state_metrics="http://127.0.0.1:3/metrics",
    )
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring" / "endpoints.json").write_text(json.dumps(as_record(endpoints)))
    assert monitoring_endpoints(tmp_path) == endpoints
    (tmp_path / "monitoring" / "endpoints.json").write_text('{"prometheus": "x"}')
    with pytest.raises(LabError, match="run `python -m lab up` again"):
        monitoring_endpoints(tmp_path)


def _backup(name: str, instance: str, kind: str, phase: str, end: str | None) -> dict[str, object]:
    status: dict[str, object] = {"phase": phase}
    if end:
        status["endTime"] = end
    return {
        "metadata": {"name": name, "namespace": "tenants"},
        "spec": {"instance": instance, "type": kind},
        "status": status,
    }


def test_operator_metrics_are_served_as_named(tmp_path: Path) -> None:
    metrics = OperatorMetrics()
    metrics.backups(
        [
            _backup("f1", "tenant-0", "full", "Completed", "2026-11-30T06:00:00Z"),
            _backup("f2", "tenant-0", "full", "Completed", "2026-11-30T07:00:00.5Z"),
            _backup("f3", "tenant-0", "full", "Failed", "2026-11-30T08:00:00Z"),
            _backup("l1", "tenant-0", "log", "Completed", "2026-11-30T07:05:00Z"),
            _backup("f4", "tenant-1", "full", "Running", None),
        ],
        [{"metadata": {"name": "p1", "namespace": "tenants"}, "spec": {"instance": "tenant-0"}}],
    )
    metrics.instances({("tenants", "tenant-0"): True, ("tenants", "tenant-1"): False})
    metrics.reconciled("MSSQLBackup")
    metrics.reconciled("MSSQLBackup", failed=True)
    port = metrics.serve(0)
    families = {
        f.name: f
        for f in text_string_to_metric_families(
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        )
    }
    last = {
        (s.labels["instance"], s.labels["type"]): s.value
        for s in families["mssql_backup_last_success_timestamp_seconds"].samples
    }
    assert last == {("tenant-0", "full"): 1796022000.5, ("tenant-0", "log"): 1796022300.0}
    info = families["mssql_backup_policy_info"].samples
    assert [(s.labels, s.value) for s in info] == [
        ({"namespace": "tenants", "instance": "tenant-0", "policy": "p1"}, 1.0)
    ]
    ready = {s.labels["instance"]: s.value for s in families["mssql_instance_ready"].samples}
    assert ready == {"tenant-0": 1.0, "tenant-1": 0.0}

    def count(family: str, kind: str) -> float:
        return next(
            s.value
            for s in families[family].samples
            if s.name.endswith("_total") and s.labels["kind"] == kind
        )

    assert count("mssql_operator_reconcile", "MSSQLBackup") == 2
    assert count("mssql_operator_reconcile_errors", "MSSQLBackup") == 1
    assert count("mssql_operator_reconcile_errors", "MSSQLRestore") == 0, "every kind from the start"
    metrics.backups([], [])  # everything deleted: the series go with it
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "mssql_backup_last_success_timestamp_seconds{" not in text
    assert "mssql_backup_policy_info{" not in text


def test_operator_target_file_is_replaced_and_only_its_own_removed(tmp_path: Path) -> None:
    path = write_target(tmp_path / "targets", 4001, {"pod": "op-a"})
    assert path.name == TARGET_FILE
    assert json.loads(path.read_text()) == [{"targets": ["127.0.0.1:4001"], "labels": {"pod": "op-a"}}]
    write_target(tmp_path / "targets", 4002, {"pod": "op-b"})  # the next operator (the first was killed)
    assert not remove_target(tmp_path / "targets", 4001, {"pod": "op-a"}), "a successor's file stays"
    assert path.exists()
    assert remove_target(tmp_path / "targets", 4002, {"pod": "op-b"}) and not path.exists()
    assert [p.name for p in (tmp_path / "targets").iterdir()] == []


_LOAD = textwrap.dedent(
    """
    import os, sys, time
    from loadgen.metrics import LoadMetrics
    port = LoadMetrics().serve(0, None, "x", run_id=sys.argv[1] or None)
    print(port, flush=True)
    if sys.argv[2] == "wait":
        time.sleep(60)
    """
)


def _load_process(tmp_path: Path, run_id: str, mode: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HARNESS_PROMETHEUS_SD_DIR": str(tmp_path / "targets"),
        "PYTHONPATH": str(project_root()),
    }
    env.pop("HARNESS_RUN_ID", None)
    return subprocess.Popen(
        [sys.executable, "-c", _LOAD, run_id, mode], stdout=subprocess.PIPE, text=True, env=env
    )


def test_load_metrics_announce_themselves_to_prometheus(tmp_path: Path) -> None:
    killed = _load_process(tmp_path, "run-1", "wait")
    try:
        assert killed.stdout is not None
        port = int(killed.stdout.readline())
        target = tmp_path / "targets" / f"load-{killed.pid}.json"
        assert json.loads(target.read_text()) == [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"run_id": "run-1"}}
        ]
        assert [p.name for p in target.parent.iterdir()] == [target.name], "no temp file left"
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        if killed.stdout is not None:
            killed.stdout.close()
    assert target.exists(), "a killed load leaves its file (the target reads down)"
    clean = _load_process(tmp_path, "", "exit")
    out, _ = clean.communicate(timeout=30)
    assert clean.returncode == 0 and out.strip().isdigit()
    assert not (tmp_path / "targets" / f"load-{clean.pid}.json").exists(), "removed at a normal exit"


def test_load_metrics_write_no_target_file_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARNESS_PROMETHEUS_SD_DIR", raising=False)
    LoadMetrics().serve(0, tmp_path / "metrics", "1")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics"]


def test_fail_job_knob_reaches_the_executor_which_fails_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = {
        "apiVersion": "mssql.example.com/v1alpha1",
        "kind": "MSSQLBackup",
        "metadata": {
            "name": "drill",
            "namespace": "tenants",
            "uid": "u",
            "annotations": {FAIL_JOB_ANNOTATION: "disk full (drill)"},
        },
        "spec": {"instance": "tenant-0", "type": "full"},
    }
    job = backup_job(backup, "127.0.0.1", 20000)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["backup-full", "--id", "drill", "--fail", "disk full (drill)"]
    assert job["spec"]["backoffLimit"] == 3 and job["metadata"]["ownerReferences"][0]["kind"] == "MSSQLBackup"
    del backup["metadata"]["annotations"]  # type: ignore[attr-defined]
    plain = backup_job(backup, "127.0.0.1", 20000)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--fail" not in plain
    assert executor_main(["backup-full", "--id", "drill", "--fail", "disk full (drill)"]) == 1
    assert capsys.readouterr().err.strip() == "executor: failing on purpose: disk full (drill)"
