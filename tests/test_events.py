"""Kubernetes Events in the lab: the two API views, kubectl, the recorder, who emits, the evidence.

The API tests run a bare API server (``python -m lab.api`` on port 0); the controllers
run in-process against it, one ``reconcile_once`` at a time, with the nodes and pod
states written by the test. The kubelet test runs a real kubelet process on a node of
its own (as tests/test_kubelet.py does). No lab is started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from common.times import format_time
from lab import events
from lab.api import ApiServerProcess, start_api_server
from lab.api.event_views import expire_events, to_core_v1, to_events_v1
from lab.api.settings import Settings
from lab.api.state import State
from lab.controllers.deployment import DeploymentController
from lab.controllers.loop import one_object
from lab.controllers.replicaset import ReplicaSetController
from lab.controllers.scheduler import SchedulerController
from lab.controllers.statefulset import StatefulSetController
from lab.kubeclient import ApiError, KubeClient
from lab.operator.jobs import record_backup_result
from probes.k8s.evidence import capture_events, event_last_seen, events_in_window, events_text
from probes.kubectl_text import kubectl_failure
from tests.lab_fixtures import Kubectl, KubeletNode, kubelet_node

Obj = dict[str, Any]
NEW = "/apis/events.k8s.io/v1"


def _core_event(name: str, ns: str = "default", **fields: Any) -> Obj:
    stamp = format_time()
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": "web-0", "uid": "u-1", "apiVersion": "v1"},
        "reason": "Started",
        "message": "Started container main",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": "Normal",
        "reportingComponent": "kubelet",
        "reportingInstance": "node-a",
    }
    body.update(fields)
    return body


def _wait_for(what: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


# -- pure: conversion, TTL, the evidence window ------------------------------------------------------


def test_conversion_maps_every_field_both_ways() -> None:
    core = _core_event(
        "a.1", action="Binding", series={"count": 3, "lastObservedTime": "2026-01-01T00:00:00.000000Z"}
    )
    new = to_events_v1(core)
    assert new["apiVersion"] == "events.k8s.io/v1"
    assert new["note"] == core["message"]
    assert new["regarding"] == core["involvedObject"]
    assert new["deprecatedSource"] == core["source"]
    assert new["deprecatedFirstTimestamp"] == core["firstTimestamp"]
    assert new["deprecatedLastTimestamp"] == core["lastTimestamp"]
    assert new["deprecatedCount"] == 1
    assert new["reportingController"] == "kubelet"
    assert (new["reportingInstance"], new["action"], new["series"]["count"]) == ("node-a", "Binding", 3)
    assert "message" not in new and "involvedObject" not in new
    back = to_core_v1(new)
    for field in (
        "message",
        "involvedObject",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "series",
    ):
        assert back[field] == core[field], field
    assert back["reportingComponent"] == "kubelet" and back["apiVersion"] == "v1"


def test_events_expire_after_an_hour_of_silence() -> None:
    state = State(Settings())
    state.open()
    try:
        state.store.create("events", _core_event("old.1"))
        state.store.create("events", _core_event("fresh.1"))
        assert expire_events(state, now=time.time() + 1800) == 0
        assert expire_events(state, now=time.time() + 3700) == 2
        assert [e for e in state.store.scan("events")] == []
    finally:
        state.close()


def _at(offset: float, base: float) -> str:
    return format_time(base + offset)


def test_evidence_keeps_the_events_of_the_run_window_in_time_order() -> None:
    start = 1_800_000_000.0
    end = start + 600
    items = [
        {**_core_event("late.1"), "lastTimestamp": _at(700, start), "reason": "TooLate"},
        {**_core_event("during.2"), "lastTimestamp": _at(300, start), "reason": "Second", "count": 4},
        {**_core_event("edge.0"), "lastTimestamp": _at(-20, start), "reason": "InMargin"},
        {**_core_event("early.1"), "lastTimestamp": _at(-120, start), "reason": "TooEarly"},
        {  # an events.k8s.io-style record: series and eventTime only
            "metadata": {"name": "series.1", "namespace": "db"},
            "eventTime": _at(10, start),
            "series": {"count": 7, "lastObservedTime": _at(100, start)},
            "reason": "Series",
            "regarding": {"kind": "Pod", "namespace": "db", "name": "db-0"},
            "reportingController": "kubelet",
            "note": "Readiness probe failed:\n timeout",
            "type": "Warning",
        },
        "not an event",
    ]
    kept = events_in_window(items, start, end, margin=30)
    assert [e["reason"] for e in kept] == ["InMargin", "Series", "Second"]
    assert event_last_seen(kept[1]) == start + 100
    text = events_text(kept).splitlines()
    assert len(text) == 4 and text[0].startswith("#")
    assert "Warning" in text[2] and "pod/db/db-0" in text[2] and "x7" in text[2]
    assert text[2].endswith("Readiness probe failed: timeout")
    assert "x4" in text[3] and "kubelet" in text[3]


def test_evidence_without_a_known_start_filters_nothing_and_says_why(tmp_path: Path) -> None:
    written = capture_events(tmp_path, None, time.time())
    assert [p.name for p in written] == ["events.json", "events.txt"]
    for path in written:
        why = kubectl_failure(path.read_text())
        assert why is not None and "start is unknown" in why


def test_recording_never_raises_and_does_not_wait_for_a_dead_server() -> None:
    events.forget()
    dead = KubeClient("http://127.0.0.1:9")  # discard port: connection refused
    began = time.monotonic()
    for _ in range(3):
        events.record(
            dead, {"kind": "Pod", "name": "p", "namespace": "default"}, "Started", "x", component="t"
        )
    events.record(dead, {"kind": "Pod"}, "NoName", "x", component="t")
    assert time.monotonic() - began < 3


def test_queued_events_never_make_the_caller_wait_and_drop_when_full() -> None:
    events.forget()
    with socket.socket() as frozen:  # accepts connections, never answers: a frozen API server
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(2048)
        client = KubeClient(f"http://127.0.0.1:{frozen.getsockname()[1]}")
        pod = {"kind": "Pod", "name": "p", "namespace": "default"}
        began = time.monotonic()
        queued = [
            events.record_later(client, pod, "Started", f"x {i}", component="t")
            for i in range(events.QUEUE_SIZE + 200)
        ]
        assert time.monotonic() - began < 0.5, "the caller waited on the API server"
        assert not all(queued), "a full queue drops Events"
        assert events.flush(10), "the sender stays quiet after a timeout, so the queue drains"


def test_recorder_stays_quiet_after_overload_or_a_server_error() -> None:
    seen: list[str] = []

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(503 if len(seen) == 1 else 429)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = KubeClient(f"http://127.0.0.1:{httpd.server_address[1]}")
        events.forget()
        for reason in ("First", "Second", "Third"):
            events.record(client, {"kind": "Pod", "name": "p", "namespace": "d"}, reason, "x", component="t")
        assert len(seen) == 1, "after a 503 the recorder is quiet"
        events.forget()
        for reason in ("Fourth", "Fifth"):
            events.record(client, {"kind": "Pod", "name": "p", "namespace": "d"}, reason, "x", component="t")
        assert len(seen) == 2, "after a 429 the recorder is quiet"
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the API server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("events")
    srv = start_api_server(root / "state", logs_dir=root / "logs")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def api(server: ApiServerProcess) -> KubeClient:
    return KubeClient(server.url)


_count = iter(range(10_000))


@pytest.fixture
def ns(api: KubeClient) -> str:
    name = f"ev{next(_count)}-{os.getpid()}"
    api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _events(api: KubeClient, ns: str, reason: str | None = None) -> list[Obj]:
    found = api.list("events", ns)
    return [e for e in found if reason is None or e.get("reason") == reason]


def _pod(name: str, ns: str, node: str | None = None, **spec: Any) -> Obj:
    body: Obj = {"name": name, "namespace": ns}
    containers = [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": body,
        "spec": {"containers": containers, **spec},
    }
    if node:
        pod["spec"]["nodeName"] = node
    return pod


@pytest.mark.integration
def test_one_store_two_api_views(api: KubeClient, ns: str) -> None:
    api.create("events", _core_event("web-0.aaaa", ns), ns)
    seen = api.request("GET", f"{NEW}/namespaces/{ns}/events/web-0.aaaa")
    assert (seen["apiVersion"], seen["note"], seen["regarding"]["name"]) == (
        "events.k8s.io/v1",
        "Started container main",
        "web-0",
    )
    new = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web-0.bbbb"},
        "eventTime": "2026-11-30T10:00:00.123456Z",
        "reportingController": "example.com/db-controller",
        "reportingInstance": "db-controller-7f",
        "action": "Failover",
        "reason": "PrimaryLost",
        "note": "primary web-0 lost",
        "type": "Warning",
        "regarding": {"kind": "Pod", "namespace": ns, "name": "web-0"},
    }
    created = api.request("POST", f"{NEW}/namespaces/{ns}/events", new)
    assert created["note"] == "primary web-0 lost" and created["metadata"]["uid"]
    core = api.get("events", "web-0.bbbb", ns)
    assert (core["message"], core["involvedObject"]["name"], core["reportingComponent"]) == (
        "primary web-0 lost",
        "web-0",
        "example.com/db-controller",
    )
    listed = api.request(
        "GET", f"{NEW}/namespaces/{ns}/events", params={"fieldSelector": "regarding.name=web-0"}
    )
    assert {e["metadata"]["name"] for e in listed["items"]} == {"web-0.aaaa", "web-0.bbbb"}
    assert listed["kind"] == "EventList"
    patched = api.request(
        "PATCH",
        f"{NEW}/namespaces/{ns}/events/web-0.bbbb",
        {"note": "promoted web-1"},
        content_type="application/merge-patch+json",
    )
    assert (
        patched["note"] == "promoted web-1"
        and api.get("events", "web-0.bbbb", ns)["message"] == "promoted web-1"
    )
    with pytest.raises(ApiError) as refused:
        api.request(
            "POST", f"{NEW}/namespaces/{ns}/events", {**new, "metadata": {"name": "x.1"}, "eventTime": None}
        )
    assert refused.value.code == 422 and "eventTime" in str(refused.value)
    stream = api.request(
        "GET", f"{NEW}/namespaces/{ns}/events", params={"watch": "true", "timeoutSeconds": "1"}
    )
    lines = [json.loads(line) for line in stream.splitlines() if line.strip()]
    assert {(e["type"], e["object"]["apiVersion"]) for e in lines} == {("ADDED", "events.k8s.io/v1")}
    api.request("DELETE", f"{NEW}/namespaces/{ns}/events/web-0.aaaa")
    assert api.get_or_none("events", "web-0.aaaa", ns) is None
    groups = {g["name"]: g for g in api.request("GET", "/apis")["groups"]}
    assert groups["events.k8s.io"]["preferredVersion"]["groupVersion"] == "events.k8s.io/v1"


@pytest.mark.integration
def test_the_new_view_pages_prints_and_bookmarks_like_every_resource(
    server: ApiServerProcess, api: KubeClient, ns: str
) -> None:
    for i in range(3):
        api.create("events", _core_event(f"web-0.p{i}", ns), ns)
    path = f"{NEW}/namespaces/{ns}/events"
    first = api.request("GET", path, params={"limit": "2"})
    assert [e["metadata"]["name"] for e in first["items"]] == ["web-0.p0", "web-0.p1"]
    assert {e["apiVersion"] for e in first["items"]} == {"events.k8s.io/v1"}
    assert first["metadata"]["remainingItemCount"] == 1
    rest = api.request("GET", path, params={"limit": "2", "continue": first["metadata"]["continue"]})
    assert [e["metadata"]["name"] for e in rest["items"]] == ["web-0.p2"]
    assert "continue" not in rest["metadata"] and "remainingItemCount" not in rest["metadata"]
    table = requests.get(
        server.url + path,
        params={"includeObject": "Object"},
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        timeout=10,
    ).json()
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:3] == ["Last Seen", "Type", "Reason"], "the core v1 Event's columns"
    message = columns.index("Message")
    assert {r["cells"][message] for r in table["rows"]} == {"Started container main"}
    assert {r["object"]["apiVersion"] for r in table["rows"]} == {"events.k8s.io/v1"}
    assert {r["object"]["note"] for r in table["rows"]} == {"Started container main"}
    params = {"watch": "true", "timeoutSeconds": "1", "allowWatchBookmarks": "true"}
    params["resourceVersion"] = first["metadata"]["resourceVersion"]
    stream = requests.get(server.url + path, params=params, timeout=10).text
    lines = [json.loads(line) for line in stream.splitlines() if line.strip()]
    assert [e["type"] for e in lines] == ["BOOKMARK"], lines
    assert (lines[0]["object"]["kind"], lines[0]["object"]["apiVersion"]) == ("Event", "events.k8s.io/v1")


@pytest.mark.integration
def test_recorder_names_and_aggregates_like_client_go(api: KubeClient, ns: str) -> None:
    events.forget()
    pod = api.create("pods", _pod("agg", ns), ns)
    for _ in range(3):
        events.record(
            api,
            pod,
            "BackOff",
            "Back-off restarting failed container main",
            type="Warning",
            component="kubelet",
            host="node-a",
        )
    events.record(
        api, pod, "Pulled", 'Container image "busybox" already present on machine', component="kubelet"
    )
    backoff = _events(api, ns, "BackOff")
    assert len(backoff) == 1, backoff
    ev = backoff[0]
    assert ev["count"] == 3 and ev["type"] == "Warning"
    assert ev["metadata"]["name"].startswith("agg.") and len(ev["metadata"]["name"].split(".")[1]) == 16
    assert ev["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert ev["source"] == {"component": "kubelet", "host": "node-a"}
    assert ev["lastTimestamp"] >= ev["firstTimestamp"]
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n-{ns}", "uid": "nu"}}
    events.record(
        api, node, "NodeNotReady", f"Node n-{ns} status is now: NodeNotReady", component="node-controller"
    )
    assert [e["involvedObject"]["kind"] for e in _events(api, "default", "NodeNotReady")] == ["Node"]


@pytest.mark.integration
def test_kubectl_get_events_events_and_describe_show_them(
    server: ApiServerProcess, api: KubeClient, ns: str, tmp_path: Path
) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    pod = api.create("pods", _pod("db-0", ns), ns)
    events.record(
        api, pod, "Scheduled", f"Successfully assigned {ns}/db-0 to node-a", component="default-scheduler"
    )
    events.record(
        api, pod, "Unhealthy", "Readiness probe failed: timeout", type="Warning", component="kubelet"
    )
    events.record(
        api, pod, "Unhealthy", "Readiness probe failed: timeout", type="Warning", component="kubelet"
    )
    run = Kubectl(server, tmp_path / "home")
    env = run.env

    def kubectl(*args: str) -> str:
        return run(*args).stdout

    listed = kubectl("get", "events", "-n", ns).splitlines()
    assert listed[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(
        "Scheduled" in line and "pod/db-0" in line and f"assigned {ns}/db-0" in line for line in listed
    )
    wide = kubectl("get", "events", "-n", ns, "-o", "wide")
    assert "Unhealthy" in wide and " 2 " in wide
    assert "Readiness probe failed: timeout" in kubectl("events", "-n", ns, "--for", "pod/db-0")
    described = kubectl("describe", "pod", "db-0", "-n", ns)
    section = described.split("Events:", 1)[1]
    assert "Scheduled" in section and "default-scheduler" in section
    assert "Warning  Unhealthy" in section and "(x2 over" in section
    assert "Scheduled" in kubectl("get", "events.events.k8s.io", "-n", ns)
    assert "Scheduled" in kubectl("get", "ev", "-n", ns)
    # the evidence writer against the same server: only the run window is kept
    api.create("events", _core_event("web-0.old", ns, lastTimestamp=format_time(time.time() - 7200)), ns)
    json_path, text_path = capture_events(tmp_path / "run", time.time() - 60, time.time(), env["KUBECONFIG"])
    kept = json.loads(json_path.read_text())
    mine = [e for e in kept["items"] if e["metadata"]["namespace"] == ns]
    assert {e["reason"] for e in mine} == {"Scheduled", "Unhealthy"}
    assert kept["window"]["marginSeconds"] == 30
    assert "Unhealthy" in text_path.read_text() and "web-0.old" not in json_path.read_text()


# -- the controllers ----------------------------------------------------------------------------------


def _node(api: KubeClient, name: str, ready: bool = True, **spec: Any) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    if api.get_or_none("nodes", name) is None:
        api.create("nodes", body)


@pytest.mark.integration
def test_scheduler_reports_scheduled_and_failed_scheduling(api: KubeClient, ns: str) -> None:
    _node(api, "ev-node-a")
    api.create("pods", _pod("fits", ns, nodeSelector={"kubernetes.io/hostname": "ev-node-a"}), ns)
    api.create("pods", _pod("nowhere", ns, nodeSelector={"disk": "nvme"}), ns)
    scheduler = SchedulerController(api)
    scheduler.reconcile_once()
    scheduler.reconcile_once()  # the same failure again: no second Event
    scheduled = _events(api, ns, "Scheduled")
    assert [(e["involvedObject"]["name"], e["message"]) for e in scheduled] == [
        ("fits", f"Successfully assigned {ns}/fits to ev-node-a")
    ]
    assert scheduled[0]["source"]["component"] == "default-scheduler"
    failed = _events(api, ns, "FailedScheduling")
    assert len(failed) == 1 and failed[0]["type"] == "Warning" and failed[0]["count"] == 1
    assert failed[0]["involvedObject"]["name"] == "nowhere"
    assert (
        failed[0]["message"].startswith("0/")
        and "didn't match Pod's node affinity/selector" in failed[0]["message"]
    )


def _ready_status() -> Obj:
    stamp = format_time()
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}],
    }


@pytest.mark.integration
def test_statefulset_and_deployment_controllers_report_what_they_do(api: KubeClient, ns: str) -> None:
    template = {
        "metadata": {"labels": {"app": "db"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": template,
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
            ],
        },
    }
    api.create("statefulsets", sts, ns)
    StatefulSetController(api).reconcile_once()
    created = {e["message"] for e in _events(api, ns, "SuccessfulCreate")}
    assert created == {
        "create Claim data-db-0 Pod db-0 in StatefulSet db success",
        "create Pod db-0 in StatefulSet db successful",
    }
    assert {e["involvedObject"]["kind"] for e in _events(api, ns, "SuccessfulCreate")} == {"StatefulSet"}
    api.patch("pods", "db-0", {"status": _ready_status()}, ns, sub="status")
    api.patch("statefulsets", "db", {"spec": {"replicas": 0}}, ns)
    StatefulSetController(api).reconcile_once()
    deleted = _events(api, ns, "SuccessfulDelete")
    assert [e["message"] for e in deleted] == ["delete Pod db-0 in StatefulSet db successful"]

    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {**template, "metadata": {"labels": {"app": "web"}}},
        },
    }
    api.create("deployments", dep, ns)
    DeploymentController(api).reconcile_once()
    scaling = _events(api, ns, "ScalingReplicaSet")
    assert len(scaling) == 1 and scaling[0]["involvedObject"]["kind"] == "Deployment"
    assert scaling[0]["message"].startswith("Scaled up replica set web-") and scaling[0]["message"].endswith(
        "from 0 to 2"
    )
    ReplicaSetController(api).reconcile_once()
    pods = {p["metadata"]["name"] for p in api.list("pods", ns) if p["metadata"]["name"].startswith("web-")}
    made = {
        e["message"]
        for e in _events(api, ns, "SuccessfulCreate")
        if e["involvedObject"]["kind"] == "ReplicaSet"
    }
    assert made == {f"Created pod: {p}" for p in pods} and len(pods) == 2
    assert {e["source"]["component"] for e in _events(api, ns, "SuccessfulCreate")} == {
        "statefulset-controller",
        "replicaset-controller",
    }


@pytest.mark.integration
def test_one_object_warns_once_per_version(api: KubeClient, ns: str) -> None:
    cm = api.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"}}, ns)
    for _ in range(3):
        with one_object("statefulset", cm, api):
            raise ValueError("spec.replicas must be a number")
    warned = _events(api, ns, "ReconcileError")
    assert len(warned) == 1 and warned[0]["count"] == 1 and warned[0]["type"] == "Warning"
    assert warned[0]["source"]["component"] == "statefulset-controller"
    assert "ValueError: spec.replicas must be a number" in warned[0]["message"]
    changed = api.patch("configmaps", "bad", {"data": {"k": "v"}}, ns)
    with one_object("statefulset", changed, api):
        raise ValueError("spec.replicas must be a number")
    assert _events(api, ns, "ReconcileError")[0]["count"] == 2
    with one_object("statefulset", changed):  # without a client: logged only
        raise ValueError("another problem")
    assert len(_events(api, ns, "ReconcileError")) == 1


@pytest.mark.integration
def test_operator_backup_results_are_events(api: KubeClient, ns: str) -> None:
    backup = {
        "apiVersion": "mssql.example.com/v1alpha1",
        "metadata": {"name": "nightly", "namespace": ns, "uid": "b1"},
    }
    record_backup_result(api, backup, True, "Backup nightly completed: id nightly")
    record_backup_result(api, backup, False, "BackoffLimitExceeded")
    found = {e["reason"]: e for e in _events(api, ns)}
    assert found["BackupSucceeded"]["type"] == "Normal" and found["BackupFailed"]["type"] == "Warning"
    assert found["BackupFailed"]["involvedObject"]["kind"] == "MSSQLBackup"
    assert found["BackupFailed"]["source"]["component"] == "mssql-operator"


# -- the kubelet ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> Iterator[KubeletNode]:
    from tests.test_kubelet import NODE

    with kubelet_node("test-events-", lambda root: KubeletNode(root, NODE)) as lab_node:
        yield lab_node


@pytest.mark.integration
def test_kubelet_reports_started_backoff_and_killing(node: Any) -> None:
    from tests.test_kubelet import NODE, NS, _pod

    client: KubeClient = node.client
    client.create("pods", _pod("ev-crasher", ["sh", "-c", "sleep 0.1; exit 3"]), NS)
    client.create("pods", _pod("ev-sleeper", ["sleep", "600"]), NS)

    def reasons(pod: str) -> dict[str, Obj]:
        found = client.list("events", NS, fields=f"involvedObject.name={pod}")
        return {e["reason"]: e for e in found}

    crasher = _wait_for(
        "BackOff on ev-crasher", lambda: (r := reasons("ev-crasher")) and "BackOff" in r and r, 20
    )
    backoff = crasher["BackOff"]
    assert backoff["type"] == "Warning"
    assert backoff["message"].startswith(
        "Back-off restarting failed container main in pod ev-crasher_default("
    )
    assert backoff["source"] == {"component": "kubelet", "host": NODE}
    started = crasher["Started"]
    assert started["message"] == "Started container main" and started["count"] >= 2
    assert started["involvedObject"]["fieldPath"] == "spec.containers{main}"
    assert crasher["Created"]["message"] == "Created container: main"
    assert crasher["Pulled"]["message"] == 'Container image "busybox" already present on machine'
    _wait_for("ev-sleeper started", lambda: "Started" in reasons("ev-sleeper"), 15)
    client.delete("pods", "ev-sleeper", NS)
    killing = _wait_for("Killing on ev-sleeper", lambda: reasons("ev-sleeper").get("Killing"), 15)
    assert killing["message"] == "Stopping container main" and killing["type"] == "Normal"
    client.delete("pods", "ev-crasher", NS)
    _wait_for(
        "pods gone",
        lambda: not [p for p in client.list("pods", NS) if p["metadata"]["name"].startswith("ev-")],
        20,
    )
