"""The kube-state-metrics stand-in: API objects -> series, as kube-state-metrics v2 maps them.

The mapping is pure (no server); one test serves it from a real control plane
(``python -m lab.controlplane --metrics-port 0``) and reads it back as Prometheus would.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from common.times import parse_time
from lab.controlplane import start_control_plane
from lab.kubeclient import KubeClient
from lab.monitoring.exposition import Series, label_name
from lab.monitoring.ksm import exposition, series_of
from lab.monitoring.ksm_jobs import cronjob_series, job_series, next_schedule_time
from lab.monitoring.ksm_workloads import deployment_series, node_series, pod_series, statefulset_series
from tests.test_api_support import wait_for

Obj = dict[str, Any]


def _epoch(text: str) -> float:
    value = parse_time(text)
    assert value is not None
    return value


def _by_name(series: list[Series], name: str) -> list[Series]:
    return [s for s in series if s.name == name]


def _one(series: list[Series], name: str, **labels: str) -> float:
    found = [
        s.value for s in series if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _failed_job() -> Obj:
    return {
        "metadata": {
            "name": "b1-backup",
            "namespace": "tenants",
            "creationTimestamp": "2026-11-30T06:00:00Z",
            "ownerReferences": [
                {
                    "apiVersion": "mssql.example.com/v1alpha1",
                    "kind": "MSSQLBackup",
                    "name": "b1",
                    "controller": True,
                }
            ],
        },
        "spec": {"completions": 1, "backoffLimit": 3},
        "status": {
            "active": 0,
            "failed": 4,
            "startTime": "2026-11-30T06:00:01Z",
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},
            ],
        },
    }


def test_a_failed_job_reads_as_kube_state_metrics_reports_it() -> None:
    series = job_series(_failed_job())
    base = {"namespace": "tenants", "job_name": "b1-backup"}
    assert all(s.labels["namespace"] == "tenants" and s.labels["job_name"] == "b1-backup" for s in series)
    assert _one(series, "kube_job_info") == 1
    owner = _by_name(series, "kube_job_owner")
    assert [s.labels for s in owner] == [
        {**base, "owner_kind": "MSSQLBackup", "owner_name": "b1", "owner_is_controller": "true"}
    ]
    failed = {s.labels["condition"]: s.value for s in _by_name(series, "kube_job_failed")}
    assert failed == {"true": 1.0, "false": 0.0, "unknown": 0.0}
    assert _by_name(series, "kube_job_complete") == []  # no Complete condition, no series
    reasons = {s.labels["reason"]: s.value for s in _by_name(series, "kube_job_status_failed")}
    assert reasons == {"BackoffLimitExceeded": 1.0, "DeadlineExceeded": 0.0, "Evicted": 0.0}
    assert _one(series, "kube_job_status_active") == 0
    assert _one(series, "kube_job_status_succeeded") == 0
    assert _one(series, "kube_job_spec_completions") == 1
    assert _one(series, "kube_job_status_start_time") == _epoch("2026-11-30T06:00:01Z")
    assert _one(series, "kube_job_created") == _epoch("2026-11-30T06:00:00Z")
    assert _by_name(series, "kube_job_status_completion_time") == []


def test_job_counts_and_conditions_follow_its_life() -> None:
    job = _failed_job()
    job["metadata"]["ownerReferences"] = []
    job["status"] = {"active": 1, "failed": 2, "startTime": "2026-11-30T06:00:01Z"}
    running = job_series(job)
    assert _one(running, "kube_job_status_active") == 1
    # Pods failed, no Failed condition yet: one series with an empty reason carrying the count.
    assert [(s.labels["reason"], s.value) for s in _by_name(running, "kube_job_status_failed")] == [("", 2.0)]
    assert _by_name(running, "kube_job_failed") == []
    owner = _by_name(running, "kube_job_owner")
    assert [s.labels["owner_kind"] for s in owner] == [""] and owner[0].value == 1
    job["status"] = {
        "succeeded": 1,
        "failed": 0,
        "startTime": "2026-11-30T06:00:01Z",
        "completionTime": "2026-11-30T06:00:09Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    done = job_series(job)
    assert {s.labels["condition"]: s.value for s in _by_name(done, "kube_job_complete")} == {
        "true": 1.0,
        "false": 0.0,
        "unknown": 0.0,
    }
    assert _one(done, "kube_job_status_completion_time") == _epoch("2026-11-30T06:00:09Z")
    failed_counts = _by_name(done, "kube_job_status_failed")
    assert [(s.labels.get("reason"), s.value) for s in failed_counts] == [(None, 0.0)]
    del job["spec"]["completions"]
    assert _by_name(job_series(job), "kube_job_spec_completions") == []


def test_a_failed_condition_with_an_unknown_status_reads_all_zero() -> None:
    job = _failed_job()
    job["status"]["conditions"] = [{"type": "Failed", "status": "Maybe", "reason": "Other"}]
    values = [s.value for s in _by_name(job_series(job), "kube_job_failed")]
    assert values == [0.0, 0.0, 0.0]
    reasons = {s.labels["reason"]: s.value for s in _by_name(job_series(job), "kube_job_status_failed")}
    assert reasons == {"BackoffLimitExceeded": 0.0, "DeadlineExceeded": 0.0, "Evicted": 0.0, "": 4.0}


def _cronjob(**status: Any) -> Obj:
    return {
        "metadata": {
            "name": "nightly-full",
            "namespace": "tenants",
            "creationTimestamp": "2026-11-30T06:02:30Z",
            "labels": {"app.kubernetes.io/name": "mssql-backup", "mssql.example.com/policy": "p1"},
        },
        "spec": {"schedule": "*/15 * * * *", "concurrencyPolicy": "Forbid", "suspend": False},
        "status": status,
    }


def test_cronjob_series_and_the_next_schedule_time() -> None:
    series = cronjob_series(
        _cronjob(
            lastScheduleTime="2026-11-30T06:15:00Z",
            lastSuccessfulTime="2026-11-30T06:15:40Z",
            active=[{"name": "nightly-full-29"}],
        )
    )
    assert all(s.labels["cronjob"] == "nightly-full" for s in series)
    info = _by_name(series, "kube_cronjob_info")[0].labels
    assert (info["schedule"], info["concurrency_policy"], info["timezone"]) == (
        "*/15 * * * *",
        "Forbid",
        "local",
    )
    labels = _by_name(series, "kube_cronjob_labels")[0].labels
    assert labels["label_app_kubernetes_io_name"] == "mssql-backup"
    assert labels["label_mssql_example_com_policy"] == "p1"
    assert _one(series, "kube_cronjob_status_active") == 1
    assert _one(series, "kube_cronjob_spec_suspend") == 0
    assert _one(series, "kube_cronjob_status_last_schedule_time") == _epoch("2026-11-30T06:15:00Z")
    assert _one(series, "kube_cronjob_status_last_successful_time") == _epoch("2026-11-30T06:15:40Z")
    assert _one(series, "kube_cronjob_next_schedule_time") == _epoch("2026-11-30T06:30:00Z")
    # Never scheduled: the first time after its creation.
    assert next_schedule_time(_cronjob()) == _epoch("2026-11-30T06:15:00Z")
    suspended = _cronjob()
    suspended["spec"]["suspend"] = True
    suspended_series = cronjob_series(suspended)
    assert _one(suspended_series, "kube_cronjob_spec_suspend") == 1
    assert _by_name(suspended_series, "kube_cronjob_next_schedule_time") == []
    zoned = _cronjob()
    zoned["spec"].update(schedule="0 2 * * *", timeZone="Europe/Paris")
    expected = datetime(2026, 12, 1, 1, 0, tzinfo=UTC).timestamp()  # 02:00 in Paris (UTC+1)
    assert next_schedule_time(zoned) == expected
    broken = _cronjob()
    broken["spec"]["schedule"] = "every day"
    assert _by_name(cronjob_series(broken), "kube_cronjob_next_schedule_time") == []


def test_label_keys_are_sanitised_like_kube_state_metrics() -> None:
    assert label_name("label", "app.kubernetes.io/part-of") == "label_app_kubernetes_io_part_of"
    assert label_name("label", "a_b9") == "label_a_b9"


def _pod(phase: str, ready: str, restarts: int) -> Obj:
    return {
        "metadata": {
            "name": "tenant-0-0",
            "namespace": "tenants",
            "uid": "u-1",
            "ownerReferences": [{"kind": "StatefulSet", "name": "tenant-0", "controller": True}],
        },
        "spec": {"nodeName": "lab-node-1"},
        "status": {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [{"name": "mssql", "ready": ready == "True", "restartCount": restarts}],
        },
    }


def test_pod_series() -> None:
    series = pod_series(_pod("Running", "True", 2))
    info = _by_name(series, "kube_pod_info")[0].labels
    assert info == {
        "namespace": "tenants",
        "pod": "tenant-0-0",
        "uid": "u-1",
        "host_ip": "127.0.0.1",
        "pod_ip": "127.0.0.1",
        "node": "lab-node-1",
        "created_by_kind": "StatefulSet",
        "created_by_name": "tenant-0",
        "priority_class": "",
        "host_network": "false",
    }
    phases = {s.labels["phase"]: s.value for s in _by_name(series, "kube_pod_status_phase")}
    assert phases == {"Pending": 0.0, "Succeeded": 0.0, "Failed": 0.0, "Unknown": 0.0, "Running": 1.0}
    ready = {s.labels["condition"]: s.value for s in _by_name(series, "kube_pod_status_ready")}
    assert ready == {"true": 1.0, "false": 0.0, "unknown": 0.0}
    assert _one(series, "kube_pod_container_status_restarts_total", container="mssql") == 2
    assert _one(series, "kube_pod_container_status_ready", container="mssql") == 1
    not_ready = pod_series(_pod("Pending", "False", 0))
    assert _one(not_ready, "kube_pod_status_phase", phase="Pending") == 1
    assert _one(not_ready, "kube_pod_status_ready", condition="false") == 1
    assert _one(not_ready, "kube_pod_container_status_ready", container="mssql") == 0
    no_phase = _pod("Running", "True", 0)
    del no_phase["status"]["phase"]
    assert _by_name(pod_series(no_phase), "kube_pod_status_phase") == []


def test_workload_and_node_series() -> None:
    deployment = {
        "metadata": {"name": "mssql-operator", "namespace": "mssql-operator"},
        "spec": {"replicas": 1},
        "status": {"availableReplicas": 1},
    }
    dep = deployment_series(deployment)
    assert _one(dep, "kube_deployment_spec_replicas", deployment="mssql-operator") == 1
    assert _one(dep, "kube_deployment_status_replicas_available", namespace="mssql-operator") == 1
    sts = statefulset_series(
        {"metadata": {"name": "tenant-0", "namespace": "tenants"}, "spec": {"replicas": 1}, "status": {}}
    )
    assert _one(sts, "kube_statefulset_replicas", statefulset="tenant-0") == 1
    assert _one(sts, "kube_statefulset_status_replicas_ready", statefulset="tenant-0") == 0
    node = {
        "metadata": {"name": "lab-node-2"},
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "Unknown"},
                {"type": "MemoryPressure", "status": "False"},
            ]
        },
    }
    nodes = node_series(node)
    assert _one(nodes, "kube_node_spec_unschedulable", node="lab-node-2") == 1
    statuses = {
        (s.labels["condition"], s.labels["status"]): s.value
        for s in _by_name(nodes, "kube_node_status_condition")
    }
    assert statuses[("Ready", "unknown")] == 1 and statuses[("Ready", "true")] == 0
    assert statuses[("MemoryPressure", "false")] == 1 and len(statuses) == 6


def test_exposition_parses_as_prometheus_text_with_types() -> None:
    text = exposition(
        {"jobs.batch": [_failed_job()], "pods": [_pod("Running", "True", 3)], "services": [{"ignored": 1}]}
    ).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["kube_job_failed"].type == "gauge"
    restarts = families["kube_pod_container_status_restarts"]
    assert restarts.type == "counter" and restarts.samples[0].name.endswith("_total")
    assert restarts.samples[0].value == 3
    assert "kube_job_owner" in families and "kube_pod_info" in families
    assert not any(name.startswith("kube_service") for name in families)
    assert series_of({}) == []


def test_the_control_plane_serves_the_stand_in_from_its_state(tmp_path: Path) -> None:
    plane = start_control_plane(tmp_path / "api", metrics_port=0, disable=("job",))
    try:
        url = (tmp_path / "api" / "kube-state-metrics.url").read_text().strip()
        api = KubeClient(plane.url)
        api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenants"}})
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j1", "namespace": "tenants"},
            "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
            },
        }
        api.create("jobs", job, "tenants")
        status = {
            "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        }
        api.patch("jobs", "j1", {"status": status}, "tenants", sub="status")

        def scraped() -> dict[str, Any] | None:
            body = requests.get(url, timeout=5)
            assert body.status_code == 200 and body.headers["Content-Type"].startswith("text/plain")
            families = {f.name: f for f in text_string_to_metric_families(body.text)}
            failed = families.get("kube_job_failed")
            return families if failed and any(s.value == 1 for s in failed.samples) else None

        families = wait_for(scraped, 10)
        sample = next(s for s in families["kube_job_failed"].samples if s.value == 1)
        assert sample.labels == {"namespace": "tenants", "job_name": "j1", "condition": "true"}
        created = families["kube_job_created"].samples[0].value
        assert abs(created - time.time()) < 60
        api.delete("jobs", "j1", "tenants")
        wait_for(lambda: "kube_job_info" not in requests.get(url, timeout=5).text, 10)
    finally:
        plane.stop()
