"""The soak's per-round checks on the target: backup ages, failed backup Jobs, pods, the load window.

The API's answers are canned (:mod:`tests.soak_fakes`), read through the real Kubernetes
client; the pod measurements come from a stand-in source (the real ones are tested in
``tests/test_pod_sources.py``); the load window's percentiles are checked against numpy.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadgen.journal import Write
from probes.pod_sources import PodReadings, PodRef, PodUsage
from probes.soak_checks import (
    LoadWindow,
    backup_ages,
    check_round,
    failed_backup_jobs,
    pod_states,
)
from tests.soak_fakes import FakeApi, fake_api

NS = "tenants"
BACKUPS = f"/apis/mssql.example.com/v1alpha1/namespaces/{NS}/mssqlbackups"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
OPERATOR_PODS = "/api/v1/namespaces/mssql-operator/pods"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    with fake_api(tmp_path, monkeypatch) as served:
        yield served


def _list(items: list[dict[str, Any]], kind: str = "List") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}


def _backup(
    name: str, instance: str | None, kind: str, phase: str, end: str | None = None, **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind}
    if instance is not None:
        spec["instance"] = instance
    status: dict[str, Any] = {"phase": phase, **extra}
    if end is not None:
        status["endTime"] = end
    return {
        "apiVersion": "mssql.example.com/v1alpha1",
        "kind": "MSSQLBackup",
        "metadata": {"name": name, "namespace": NS, "labels": extra.pop("labels", {})},
        "spec": spec,
        "status": status,
    }


# -- backup ages --------------------------------------------------------------------------------


def test_the_age_is_of_the_newest_completed_log_backup_and_counts_from_the_start_before_one(
    api: FakeApi,
) -> None:
    labelled = _backup("t2-log-9", None, "log", "Completed", "1970-01-01T00:04:10Z")
    labelled["metadata"]["labels"] = {"mssql.example.com/instance": "t2"}
    api.set(
        BACKUPS,
        _list(
            [
                _backup("t1-full-initial", "t1", "full", "Completed", "1970-01-01T00:01:40Z"),
                _backup("t1-log-1", "t1", "log", "Completed", "1970-01-01T00:03:20Z"),
                _backup("t1-log-2", "t1", "log", "Completed", "1970-01-01T00:05:00.5Z"),
                _backup("t1-log-3", "t1", "log", "Running"),
                _backup("t1-log-4", "t1", "log", "Failed", "1970-01-01T00:06:40Z"),
                _backup("other-log-1", "other", "log", "Completed", "1970-01-01T00:15:00Z"),
                labelled,
            ]
        ),
    )
    ages = backup_ages(["t1", "t2", "t3"], NS, None, None, now=1000.0, since=50.0)
    assert ages["t1"] == {"last_log_end": 300.5, "last_full_end": 100.0, "age": 699.5, "error": None}
    assert ages["t2"] == {"last_log_end": 250.0, "last_full_end": None, "age": 750.0, "error": None}
    # No log backup yet: the age counts from the soak's start, so a policy that never makes one
    # grows into a violation instead of staying unknown.
    assert ages["t3"] == {"last_log_end": None, "last_full_end": None, "age": 950.0, "error": None}


def test_backups_that_cannot_be_listed_leave_every_age_unknown_with_the_reason(api: FakeApi) -> None:
    api.set(BACKUPS, None, status=403)
    ages = backup_ages(["t1", "t2"], NS, None, None, now=1000.0, since=0.0)
    for entry in ages.values():
        assert entry["age"] is None and entry["last_log_end"] is None
        assert "access denied (403)" in entry["error"] and "\n" not in entry["error"]


def test_a_completed_backup_without_a_readable_end_is_named(api: FakeApi) -> None:
    api.set(BACKUPS, _list([_backup("t1-log-1", "t1", "log", "Completed", "yesterday")]))
    entry = backup_ages(["t1"], NS, None, None, now=100.0, since=40.0)["t1"]
    assert entry["age"] == 60.0 and entry["last_log_end"] is None
    assert "t1-log-1" in entry["error"] and "RFC 3339" in entry["error"]


# -- failed backup jobs -------------------------------------------------------------------------


def _job(name: str, owner: tuple[str, str] | None, failed: bool, complete: bool = False) -> dict[str, Any]:
    conditions = []
    if failed:
        conditions.append(
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "1970-01-01T00:16:40Z",
            }
        )
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    md: dict[str, Any] = {"name": name, "namespace": NS}
    if owner is not None:
        kind, owner_name = owner
        md["ownerReferences"] = [
            {"apiVersion": "mssql.example.com/v1alpha1", "kind": kind, "name": owner_name, "uid": "u"}
        ]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "status": {"conditions": conditions}}


def test_failed_backup_jobs_are_the_failed_jobs_of_backups_and_failed_backups_without_one(
    api: FakeApi,
) -> None:
    api.set(
        JOBS,
        _list(
            [
                _job("b1-backup", ("MSSQLBackup", "b1"), failed=True),
                _job("r1-restore", ("MSSQLRestore", "r1"), failed=True),  # a restore's: not a backup
                _job("b4-backup", ("MSSQLBackup", "b4"), failed=False, complete=True),
                _job("b3-backup", None, failed=True),  # no owner: by the lab's <backup>-backup naming
                _job("x-backup", None, failed=True),  # no such backup
            ]
        ),
    )
    api.set(
        BACKUPS,
        _list(
            [
                _backup("b1", "t1", "log", "Failed", "1970-01-01T00:16:41Z", reason="boom; job failed"),
                _backup("b2", "t1", "log", "Failed", "1970-01-01T00:20:00Z", reason="instance gone"),
                _backup("b3", "t2", "log", "Failed", "1970-01-01T00:16:42Z"),
                _backup("b4", "t2", "log", "Completed", "1970-01-01T00:16:43Z"),
            ]
        ),
    )
    errors: list[str] = []
    failed = failed_backup_jobs(NS, None, None, errors)
    assert errors == []
    assert [(f["name"], f["backup"], f["kind"]) for f in failed] == [
        ("b1-backup", "b1", "Job"),
        ("b3-backup", "b3", "Job"),
        ("b2", "b2", "MSSQLBackup"),  # its Job is gone: reported by the backup, counted once
    ]
    first = failed[0]
    assert first["namespace"] == NS and first["failed_at"] == 1000.0
    assert first["reason"] == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert failed[2]["reason"] == "instance gone" and failed[2]["failed_at"] == 1200.0


def test_jobs_that_cannot_be_listed_are_one_error_line_not_an_exception(api: FakeApi) -> None:
    api.set(BACKUPS, _list([]))
    api.set(JOBS, None, status=403)
    errors: list[str] = []
    assert failed_backup_jobs(NS, None, None, errors) == []
    assert len(errors) == 1 and "jobs in tenants: access denied (403)" in errors[0]


# -- pods ---------------------------------------------------------------------------------------


def _pod(
    name: str,
    namespace: str,
    labels: dict[str, str],
    restarts: Sequence[int] = (0,),
    phase: str = "Running",
    owner: str | None = "StatefulSet",
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": "x", "uid": "o"}]
    statuses = [{"name": f"c{i}", "restartCount": n} for i, n in enumerate(restarts)]
    return {"metadata": md, "status": {"phase": phase, "containerStatuses": statuses}}


class _Source:
    """Measures every pod as 1 MiB per character of its name, 2 connections; one line of errors."""

    kind = "lab"

    def __init__(self) -> None:
        self.asked: list[PodRef] = []

    def read(self, pods: Sequence[PodRef]) -> PodReadings:
        self.asked = list(pods)
        usage = {p.key: PodUsage(memory_bytes=len(p.name) << 20, connections=2) for p in pods}
        return PodReadings(usage, ["one measurement was not taken"])


def _tenant_label(name: str) -> dict[str, str]:
    return {"mssql.example.com/instance": name}


def test_pod_states_lists_the_operator_and_each_tenants_database_pods_with_their_usage(
    api: FakeApi,
) -> None:
    api.set(
        OPERATOR_PODS,
        _list(
            [
                _pod(
                    "mssql-operator-abc",
                    "mssql-operator",
                    {"app": "mssql-operator"},
                    (1, 2),
                    owner="ReplicaSet",
                )
            ]
        ),
    )
    api.set(
        PODS,
        _list(
            [
                _pod("t1-0", NS, _tenant_label("t1"), (4,)),
                _pod("t1-log-7-backup-xyz", NS, _tenant_label("t1"), owner="Job"),  # a backup Job's pod
                _pod("t2-0", NS, _tenant_label("t2"), phase="Succeeded"),  # finished
                _pod("stranger-0", NS, _tenant_label("stranger")),  # not a tenant of this soak
            ]
        ),
    )
    source = _Source()
    errors: list[str] = []
    pods = pod_states(["t1", "t2"], {"namespace": NS}, None, errors, source=source)
    assert pods == {
        "mssql-operator/mssql-operator-abc": {
            "role": "operator",
            "tenant": None,
            "uid": "uid-mssql-operator-abc",
            "restarts": 3,
            "memory_bytes": len("mssql-operator-abc") << 20,
            "connections": 2,
        },
        "tenants/t1-0": {
            "role": "mssql",
            "tenant": "t1",
            "uid": "uid-t1-0",
            "restarts": 4,
            "memory_bytes": 4 << 20,
            "connections": 2,
        },
    }
    assert errors == [
        "tenant t2: no MSSQL pod in tenants (mssql.example.com/instance=t2)",
        "one measurement was not taken",
    ]
    # One listing for all tenants: the default selector is <label>={tenant}.
    listed = [query.get("labelSelector") for path, query in api.requests if path == PODS]
    assert listed == [["mssql.example.com/instance"]]
    assert [p.role for p in source.asked] == ["operator", "mssql"]


def test_a_selector_of_another_shape_is_asked_per_tenant(api: FakeApi) -> None:
    api.set(OPERATOR_PODS, _list([]))
    api.set(PODS, _list([_pod("db-t1", NS, {"app": "db", "instance": "t1"})]))
    config = {"namespace": NS, "tenant_pod_selector": "app=db,instance={tenant}"}
    errors: list[str] = []
    pods = pod_states(["t1"], config, None, errors, source=_Source())
    assert list(pods) == ["tenants/db-t1"]
    assert [q.get("labelSelector") for p, q in api.requests if p == PODS] == [["app=db,instance=t1"]]
    assert errors[0] == "operator pods: none match app=mssql-operator in mssql-operator"


def test_a_source_that_breaks_leaves_the_numbers_unknown_and_says_why(api: FakeApi) -> None:
    class Broken:
        kind = "lab"

        def read(self, pods: Sequence[PodRef]) -> PodReadings:
            raise RuntimeError("psutil exploded")

    api.set(OPERATOR_PODS, _list([]))
    api.set(PODS, _list([_pod("t1-0", NS, _tenant_label("t1"), (1,))]))
    errors: list[str] = []
    pods = pod_states(["t1"], None, None, errors, source=Broken())
    assert pods["tenants/t1-0"]["restarts"] == 1
    assert pods["tenants/t1-0"]["memory_bytes"] is None and pods["tenants/t1-0"]["connections"] is None
    assert "pod memory and connections: RuntimeError: psutil exploded" in errors


def test_an_unreachable_api_is_error_lines_and_no_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_api(tmp_path, monkeypatch):
        pass  # the server is gone: its port refuses connections
    errors: list[str] = []
    assert pod_states(["t1"], None, None, errors, source=_Source()) == {}
    assert failed_backup_jobs(NS, None, None, errors) == []
    ages = backup_ages(["t1"], NS, None, None, now=10.0, since=0.0)
    assert ages["t1"]["age"] is None and "cannot reach the Kubernetes API" in ages["t1"]["error"]
    assert len(errors) == 3 and all("cannot reach the Kubernetes API" in e for e in errors), errors


# -- a round ------------------------------------------------------------------------------------


def test_a_check_round_is_a_contract_line_without_the_load(api: FakeApi) -> None:
    api.set(BACKUPS, _list([_backup("t1-log-1", "t1", "log", "Completed", "1970-01-01T00:01:40Z")]))
    api.set(JOBS, _list([]))
    api.set(OPERATOR_PODS, _list([_pod("op", "mssql-operator", {"app": "mssql-operator"}, owner=None)]))
    api.set(PODS, _list([_pod("t1-0", NS, _tenant_label("t1"))]))
    line = check_round(["t1"], NS, None, None, started_at=40.0, now=160.0, source=_Source())
    assert list(line) == ["kind", "at", "elapsed", "backups", "failed_jobs", "pods", "errors", "limits"]
    assert (line["kind"], line["at"], line["elapsed"]) == ("check", 160.0, 120.0)
    assert line["backups"]["t1"]["age"] == 60.0 and line["failed_jobs"] == []
    assert set(line["pods"]) == {"mssql-operator/op", "tenants/t1-0"}
    assert line["errors"] == ["one measurement was not taken"]
    json.dumps(line)  # a JSON line as it is
    assert (
        check_round(["t1"], NS, None, None, started_at=40.0, now=160.0, elapsed=119.5, source=_Source())[
            "elapsed"
        ]
        == 119.5
    )


# -- the load window ----------------------------------------------------------------------------


def _write(tenant: str, seq: int, latency: float, outcome: str = "ok", due_lag: float | None = None) -> Write:
    start = 1000.0 + seq * 0.05
    due = None if due_lag is None else start - due_lag
    return Write(tenant, 0, seq, start, start + latency, latency, outcome, None, None, due)  # type: ignore[arg-type]


def test_the_load_window_p99_matches_numpy_and_a_take_starts_a_new_window() -> None:
    rng = random.Random(7)
    window = LoadWindow(["a", "b", "quiet"])
    writes = []
    expected: dict[str, list[float]] = {"a": [], "b": []}
    for seq in range(3000):
        tenant = "a" if seq % 3 else "b"
        latency = rng.lognormvariate(-5.0, 1.0)  # about 7 ms, a long tail
        lag = rng.choice([None, 0.0, rng.uniform(0.0, 0.5)])  # scheduled earlier: counted from due
        outcome = "ok" if seq % 97 else ("fail" if seq % 2 else "info")
        writes.append(_write(tenant, seq, latency, outcome, lag))
        if outcome == "ok":
            expected[tenant].append(latency + (lag or 0.0))
    window.feed(writes[:1000])
    window.feed(writes[1000:])
    window.feed([_write("late", 1, 0.01)])
    taken = window.take()
    assert list(taken) == ["a", "b", "quiet", "late"]
    for tenant, values in expected.items():
        micros = np.round(np.array(values) * 1e6)
        exact = float(np.percentile(micros, 99, method="inverted_cdf")) / 1000.0  # nearest rank, in ms
        got = taken[tenant]["p99_ms"]
        # HDR at 3 significant digits: the highest value equivalent to the exact one, within 0.1 %.
        assert exact <= got <= exact * 1.001 + 0.001, (tenant, got, exact)
        assert taken[tenant]["acks"] == len(values)
    a_sent = sum(1 for w in writes if w.tenant == "a")
    assert taken["a"]["acks"] + taken["a"]["fails"] + taken["a"]["infos"] == a_sent
    assert taken["a"]["fails"] > 0 and taken["b"]["infos"] > 0
    assert taken["quiet"] == {"acks": 0, "fails": 0, "infos": 0, "p99_ms": None}
    again = window.take()
    assert list(again) == ["a", "b", "quiet"] and all(v["acks"] == 0 for v in again.values())


def test_a_window_of_only_failures_has_no_p99() -> None:
    window = LoadWindow(["a"])
    window.feed([_write("a", 1, 2.0, "fail"), _write("a", 2, 30.0, "info")])
    assert window.take() == {"a": {"acks": 0, "fails": 1, "infos": 1, "p99_ms": None}}
