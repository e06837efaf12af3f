"""The lab knob of a planted memory leak: its rate, the real process, and its place in the pod.

The leak is a real process whose resident memory is measured while it grows; the
kubelet's bookkeeping (:class:`lab.kubelet.memory_leak.PodLeak`) runs with the kubelet's
own :class:`~lab.kubelet.runtime.Spawner` and record folder, and the lab's pod source
(:class:`probes.pod_sources.LabPods`) must count the leak in its pod. The last test runs a
real kubelet against a real API server and annotates a running pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab.cluster import Layout
from lab.errors import LabError
from lab.kubelet.memory_leak import ANNOTATION, CAP_BYTES, CONTAINER, PodLeak, parse_rate
from lab.kubelet.runtime import Spawner, load_records
from lab.paths import project_root
from probes.pod_sources import LabPods, PodRef
from probes.soak_checks import pod_states
from tests.lab_fixtures import KubeletNode, kubelet_node
from tests.test_api_support import wait_for

MIB = 1024 * 1024
NODE = "lab-leak-node"


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1048576", MIB),
        ("1Mi", MIB),
        ("1Mi/s", MIB),
        ("500k", 500_000),
        ("1.5Mi", 3 * MIB // 2),
        (" 2e6 ", 2_000_000),
    ],
)
def test_a_rate_is_bytes_per_second_or_a_quantity(text: str, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "0", "-1Mi", "fast", "1MiB", "1 Xi", "nan", "inf", "0.5"])
def test_a_malformed_rate_is_one_line_naming_the_annotation_and_the_fix(text: str) -> None:
    with pytest.raises(LabError) as info:
        parse_rate(text)
    message = str(info.value)
    assert ANNOTATION in message and '"1Mi"' in message and "\n" not in message


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _leak(rate: str, cap: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "lab.kubelet.memory_leak", "--bytes-per-second", rate, "--cap", str(cap)]
    proc = subprocess.Popen(argv, cwd=project_root(), stdout=subprocess.PIPE)
    assert proc.stdout is not None and b"leaking" in proc.stdout.readline()
    return proc


def test_the_leak_grows_its_resident_memory_at_the_rate_then_holds_the_cap() -> None:
    proc = _leak("32Mi", 512 * MIB)
    try:
        time.sleep(0.5)
        first, began = _rss(proc.pid), time.monotonic()
        time.sleep(2.0)
        grown, took = _rss(proc.pid) - first, time.monotonic() - began
        rate = grown / took
        assert 0.8 * 32 * MIB <= rate <= 1.2 * 32 * MIB, f"{rate / MIB:.1f} MiB/s"
    finally:
        proc.kill()
        proc.wait(5)
    capped = _leak("64Mi", 8 * MIB)
    try:
        base = _rss(capped.pid)
        assert capped.stdout is not None and b"reached" in capped.stdout.readline()
        time.sleep(0.5)
        held = _rss(capped.pid) - base
        assert 7 * MIB <= held <= 9 * MIB, f"{held / MIB:.1f} MiB held at an 8 MiB cap"
    finally:
        capped.kill()
        capped.wait(5)


def _annotated(value: str | None) -> dict[str, Any]:
    annotations = {} if value is None else {ANNOTATION: value}
    return {"metadata": {"name": "db-0", "namespace": "ns", "uid": "uid-leak", "annotations": annotations}}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Layout, PodLeak, list[tuple[str, str, str]]]]:
    layout = Layout(tmp_path / "lab")
    layout.root.mkdir(parents=True)
    layout.config.write_text(json.dumps({"port": 1, "nodes": [NODE]}))
    events: list[tuple[str, str, str]] = []
    containers = layout.node_state(NODE) / "containers"
    leak = PodLeak(Spawner(), containers, "ns", "db-0", "uid-leak", lambda *e: events.append(e))
    try:
        yield layout, leak, events
    finally:
        leak.stop()


def test_the_kubelet_plants_the_leak_in_the_pods_tree_and_follows_the_annotation(
    lab: tuple[Layout, PodLeak, list[tuple[str, str, str]]],
) -> None:
    layout, leak, events = lab
    containers = layout.node_state(NODE) / "containers"
    pod = PodRef("ns", "db-0", "uid-leak", "mssql", "db")
    source = LabPods(layout=layout)
    leak.sync(_annotated("24Mi"), running=True)
    assert leak.proc is not None and leak.rate == 24 * MIB
    pid = leak.proc.pid
    (record,) = load_records(containers)
    assert (record["uid"], record["container"], record["members"][0][0]) == ("uid-leak", CONTAINER, pid)
    assert events[-1][0] == "MemoryLeakStarted" and str(CAP_BYTES) in events[-1][1]
    time.sleep(0.3)
    first = source.read([pod]).usage["ns/db-0"].memory_bytes
    time.sleep(1.5)
    leak.sync(_annotated("24Mi"), running=True)  # the same value: the same process, not restarted
    assert leak.proc is not None and leak.proc.pid == pid
    later = source.read([pod]).usage["ns/db-0"].memory_bytes
    assert first is not None and later is not None
    assert later - first >= 24 * MIB, "the pod source counts the leak's memory in its pod"
    leak.sync(_annotated("8Mi"), running=True)  # a new rate: a new leak, the old one's memory freed
    assert leak.proc is not None and leak.proc.pid != pid and leak.rate == 8 * MIB
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    leak.sync(_annotated("lots"), running=True)
    leak.sync(_annotated("lots"), running=True)
    refused = [e for e in events if e[0] == "MemoryLeakRefused"]
    assert len(refused) == 1 and refused[0][2] == "Warning" and ANNOTATION in refused[0][1]
    assert leak.proc is None and load_records(containers) == [] and not leak.log_path.exists()
    leak.sync(_annotated("8Mi"), running=True)
    assert leak.proc is not None
    leak.sync(_annotated("8Mi"), running=False)  # the pod's containers stopped: so does the leak
    assert leak.proc is None and load_records(containers) == []


# -- a real kubelet ---------------------------------------------------------------------------------


@pytest.fixture
def node() -> Iterator[KubeletNode]:
    with kubelet_node("test-leak-", lambda root: KubeletNode(root, NODE)) as lab_node:
        yield lab_node


def _pod_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "leaky"}},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 600"]}],
        },
    }


def _running(node: KubeletNode, name: str) -> dict[str, Any] | None:
    pod = node.client.get_or_none("pods", name, "default") or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return pod if statuses and (statuses[0].get("state") or {}).get("running") else None


def _leaks(node: KubeletNode) -> list[dict[str, Any]]:
    return [r for r in load_records(node.state / "containers") if r.get("container") == CONTAINER]


def _events(node: KubeletNode, reason: str) -> list[dict[str, Any]]:
    items = node.client.list("events", "default")
    return [e for e in items if e.get("reason") == reason]


@pytest.mark.integration
def test_annotating_a_running_pod_plants_the_leak_without_restarting_it(
    node: KubeletNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node.root.joinpath("cluster", "cluster.json").write_text(json.dumps({"port": 1, "nodes": [NODE]}))
    monkeypatch.setenv("HARNESS_LAB_DIR", str(node.root))
    monkeypatch.setenv("KUBECONFIG", str(node.kubeconfig))
    node.client.create("pods", _pod_doc("leaky"), "default")
    pod = wait_for(lambda: _running(node, "leaky"), 15)
    started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    config = {"operator_namespace": "default", "operator_selector": "app=leaky"}
    source = LabPods()
    before = pod_states([], config, None, [], source=source)["default/leaky"]
    node.client.patch("pods", "leaky", {"metadata": {"annotations": {ANNOTATION: "32Mi"}}}, "default")
    wait_for(lambda: _events(node, "MemoryLeakStarted"), 10)
    time.sleep(2.0)
    errors: list[str] = []
    after = pod_states([], config, None, errors, source=source)["default/leaky"]
    assert errors == []
    assert after["uid"] == before["uid"] and after["restarts"] == 0
    assert after["memory_bytes"] - before["memory_bytes"] >= 32 * MIB
    status = node.client.get("pods", "leaky", "default")["status"]["containerStatuses"][0]
    assert status["state"]["running"]["startedAt"] == started and status["restartCount"] == 0
    node.client.patch("pods", "leaky", {"metadata": {"annotations": {ANNOTATION: "much"}}}, "default")
    refused = wait_for(lambda: _events(node, "MemoryLeakRefused"), 10)
    assert refused[0]["type"] == "Warning" and '"much"' in refused[0]["message"]
    wait_for(lambda: not _leaks(node), 10)
    node.client.patch("pods", "leaky", {"metadata": {"annotations": {ANNOTATION: "4Mi"}}}, "default")
    (leak,) = wait_for(lambda: _leaks(node), 10)
    leak_pid = int(leak["members"][0][0])
    node.client.delete("pods", "leaky", "default")
    wait_for(lambda: node.client.get_or_none("pods", "leaky", "default") is None, 20)
    assert not psutil.pid_exists(leak_pid) or psutil.Process(leak_pid).status() == psutil.STATUS_ZOMBIE
    assert load_records(node.state / "containers") == []
