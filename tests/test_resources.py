"""Node CPU and memory sampling: lab process trees and the cluster's metrics API.

The lab tests never start the lab: a stand-in "kubelet" (a Python process whose
command line carries ``lab.kubelet`` and its node's name, found through a pidfile in
a temporary lab layout, exactly as the sampler finds a real one) runs a busy-looping
grandchild. The cluster tests talk to a small HTTP server standing in for an API
server, see each test's docstring.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
from kubernetes.config import kube_config

from lab.api import write_kubeconfig
from lab.cluster import Layout
from probes import node_sources
from probes.node_sources import LabNodes, NodeReading, lab_node_roots
from probes.resources import NodeSampler, summarize

NODE = "lab-node-1"

# The stand-in kubelet: a busy grandchild, then (with "churn") short-lived children forever.
KUBELET = """
import subprocess, sys, time
busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
print(busy.pid, flush=True)
while True:
    if sys.argv[-1] == "churn":
        subprocess.run([sys.executable, "-c", "sum(range(200000))"])
    time.sleep(0.05)
"""


def _layout(root: Path, pid: int) -> Layout:
    layout = Layout(root)
    layout.pids.mkdir(parents=True)
    layout.config.write_text(json.dumps({"port": 1, "nodes": [NODE]}))
    (layout.pids / f"kubelet-{NODE}.pid").write_text(f"{pid}\n")
    return layout


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill the stand-in kubelet and everything below it (only what this test started)."""
    try:
        family = [*psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = []
    for member in [psutil.Process(proc.pid), *family]:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    proc.wait(timeout=10)
    psutil.wait_procs(family, timeout=10)


@pytest.fixture(params=["steady", "churn"])
def kubelet(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", KUBELET, "lab.kubelet", "--node", NODE, request.param],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        busy = int(proc.stdout.readline())
        yield proc, busy
    finally:
        _stop_tree(proc)


def test_a_lab_node_is_its_kubelet_tree_and_uses_one_busy_core(
    kubelet: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    proc, busy = kubelet
    layout = _layout(tmp_path / "lab", proc.pid)
    assert lab_node_roots(layout) == {NODE: [proc.pid]}
    samples = tmp_path / "resources.jsonl"
    with NodeSampler(LabNodes(layout=layout), samples, interval=0.25) as sampler:
        time.sleep(3.0)
    usage = sampler.result()
    assert usage["unavailable"] is None and usage["errors"] == 0 and usage["source"] == "lab"
    node = usage["nodes"][NODE]
    # One grandchild spins a whole core; the stand-in kubelet (and its short-lived
    # children, with "churn") add a little. Two cores: at most two.
    assert 0.6 <= node["cpu_cores_mean"] <= 1.6, node
    assert node["cpu_cores_max"] <= 2.2
    assert node["memory_bytes_max"] > 5_000_000
    assert node["samples"] >= 8
    assert summarize(samples) == usage
    lines = [json.loads(x) for x in samples.read_text().splitlines()]
    assert all(x["node"] == NODE and x["at"].endswith("Z") for x in lines)
    assert lines[0]["cpu_cores"] is None  # no rate before the second sample
    assert all(x["processes"] >= 2 and x["memory"] == "pss" for x in lines)
    assert busy in {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}


def test_a_zombie_reaped_between_the_table_and_its_reading_is_not_subtracted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race behind a once-flaky count: a short-lived child is a zombie when the process
    table is read and already reaped when its turn comes. It is in neither count."""
    me = os.getpid()
    gone = 4_194_304 + 1  # above pid_max: no such process
    real = node_sources._Table.now()
    table = node_sources._Table(
        created={me: real.created[me], gone: real.created[me]},
        parent={me: 0, gone: me},
        children={0: [me], me: [gone]},
        zombies={gone},
    )
    monkeypatch.setattr(node_sources._Table, "now", classmethod(lambda cls: table))
    reading = LabNodes(discover=lambda: {NODE: [me]}).read()[NODE]
    assert reading.processes == 1
    assert reading.memory_bytes is not None and reading.memory_bytes > 0


def test_a_process_that_exits_between_samples_does_not_stop_the_sampler(tmp_path: Path) -> None:
    """A grandchild killed mid-run (left a zombie: its parent never waits for it): its
    times stand, the sampler goes on and sees the node idle."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KUBELET, "lab.kubelet", "--node", NODE, "steady"], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        busy = int(proc.stdout.readline())
        layout = _layout(tmp_path / "lab", proc.pid)
        with NodeSampler(LabNodes(layout=layout), tmp_path / "r.jsonl", interval=0.2):
            time.sleep(1.2)
            os.kill(busy, signal.SIGKILL)
            time.sleep(1.2)
        lines = _lines(tmp_path / "r.jsonl")
        assert not any("error" in x for x in lines)
        rates = [x["cpu_cores"] for x in lines if x["cpu_cores"] is not None]
        assert max(rates[:3]) > 0.5 and rates[-1] < 0.3  # busy before, idle after it exited
    finally:
        _stop_tree(proc)


# A stand-in kubelet whose only work is children that spin 0.15 s each and exit.
SHORT_LIVED = """
import subprocess, sys, time
print(0, flush=True)
spin = "import time\\nt = time.monotonic()\\nwhile time.monotonic() - t < 0.15: pass"
while True:
    subprocess.run([sys.executable, "-c", spin])
    time.sleep(0.05)
"""


def test_children_that_start_and_exit_between_samples_are_counted(tmp_path: Path) -> None:
    """Each child lives 0.15 s; samples are 0.5 s apart, so most children are never seen
    alive: their CPU comes from the parent's reaped-children times."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SHORT_LIVED, "lab.kubelet", "--node", NODE], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        layout = _layout(tmp_path / "lab", proc.pid)
        with NodeSampler(LabNodes(layout=layout), interval=0.5) as sampler:
            time.sleep(3.0)
        node = sampler.result()["nodes"][NODE]
        # About 0.15 s of spinning per ~0.2 s cycle (plus interpreter start-up).
        assert 0.45 <= node["cpu_cores_mean"] <= 1.2, node
    finally:
        _stop_tree(proc)


def test_a_node_that_is_down_has_no_numbers_and_a_failed_sample_is_recorded(tmp_path: Path) -> None:
    calls = iter([{NODE: [os.getpid()]}, RuntimeError("proc table torn"), {NODE: []}, {NODE: [os.getpid()]}])

    def discover() -> dict[str, list[int]]:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    sampler = NodeSampler(LabNodes(discover=discover), tmp_path / "r.jsonl", interval=60)
    for _ in range(4):
        sampler.sample()
    lines = _lines(tmp_path / "r.jsonl")
    assert "proc table torn" in lines[1]["error"]
    assert lines[2]["cpu_cores"] is None and lines[2]["memory_bytes"] is None and lines[2]["note"]
    assert lines[3]["cpu_cores"] is not None  # rate over the time since the last measurement
    usage = sampler.result()
    assert usage["errors"] == 1 and usage["unavailable"] is None and usage["nodes"][NODE]["samples"] == 2


def test_the_lab_is_unavailable_when_it_was_never_brought_up(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with NodeSampler(LabNodes(layout=Layout(tmp_path / "nolab")), path, interval=0.05) as sampler:
        time.sleep(0.2)
    usage = sampler.result()
    assert usage["nodes"] == {} and usage["unavailable"] is not None
    assert "python -m lab up" in usage["unavailable"] and "\n" not in usage["unavailable"]
    assert len(_lines(path)) == 1  # the sampler stopped at once


def test_a_target_without_nodes_is_unavailable() -> None:
    sampler = NodeSampler("local", interval=1.0)
    sampler.sample()
    assert "'local'" in (sampler.result()["unavailable"] or "")
    with pytest.raises(TypeError, match="interval"):
        NodeSampler("lab", 1.0)  # type: ignore[arg-type]


# ---- a real cluster's metrics API, stood in for by a small HTTP server


class _Api(BaseHTTPRequestHandler):
    status = 404
    body: dict[str, Any] = {}

    def do_GET(self) -> None:
        if self.path.startswith("/apis/metrics.k8s.io/v1beta1/nodes"):
            status, body = self.status, self.body
        else:
            status, body = 404, {}
        if status != 200:
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


def _serve(status: int, body: dict[str, Any] | None = None) -> Iterator[str]:
    handler = type("Handler", (_Api,), {"status": status, "body": body or {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def kubeconfig_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the Kubernetes client at ``url`` the way a user does: ``$KUBECONFIG``."""

    def point(url: str) -> None:
        path = write_kubeconfig(tmp_path / ".kube" / "config", url)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("KUBECONFIG", str(path))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))

    return point


def test_a_cluster_without_metrics_server_is_unavailable_with_the_fix(
    kubeconfig_for: Any, tmp_path: Path
) -> None:
    """A stand-in for a cluster without metrics-server: an HTTP server answering 404 for
    metrics.k8s.io, reached through the kubeconfig like a real API server."""
    for url in _serve(404):
        kubeconfig_for(url)
        with NodeSampler("cluster", tmp_path / "res.jsonl", interval=0.05) as sampler:
            time.sleep(0.2)
    usage = sampler.result()
    assert usage["nodes"] == {} and usage["source"] == "cluster"
    assert usage["unavailable"] is not None and "404" in usage["unavailable"]
    assert "install metrics-server" in usage["unavailable"] and "\n" not in usage["unavailable"]
    assert summarize(tmp_path / "res.jsonl") == usage


def test_a_cluster_that_forbids_node_metrics_says_which_permission(kubeconfig_for: Any) -> None:
    """A stand-in for a cluster whose RBAC refuses metrics.k8s.io (403)."""
    for url in _serve(403):
        kubeconfig_for(url)
        sampler = NodeSampler("cluster")
        sampler.sample()
    assert "nodes in the metrics.k8s.io API group" in (sampler.result()["unavailable"] or "")


def test_cluster_node_metrics_are_read_in_cores_and_bytes(kubeconfig_for: Any) -> None:
    """A stand-in for metrics-server's answer (the NodeMetricsList shape it serves)."""
    body = {
        "kind": "NodeMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "items": [
            {"metadata": {"name": "n1"}, "usage": {"cpu": "250m", "memory": "1024Ki"}},
            {"metadata": {"name": "n2"}, "usage": {"cpu": "1500000000n", "memory": "2Gi"}},
        ],
    }
    for url in _serve(200, body):
        kubeconfig_for(url)
        sampler = NodeSampler("cluster")
        sampler.sample()
        sampler.sample()
    usage = sampler.result()
    assert usage["unavailable"] is None and usage["memory"] == "working_set"
    n1, n2 = usage["nodes"]["n1"], usage["nodes"]["n2"]
    assert n1["cpu_cores_mean"] == pytest.approx(0.25) and n1["memory_bytes_max"] == 1024 * 1024
    assert n2["cpu_cores_max"] == pytest.approx(1.5)
    assert n2["memory_bytes_max"] == 2 * 1024**3 and n2["samples"] == 2


def test_node_reading_defaults_are_unknown() -> None:
    reading = NodeReading(None, None)
    assert reading.interval_seconds is None and reading.processes is None and reading.memory is None
