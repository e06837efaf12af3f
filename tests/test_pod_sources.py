"""Memory and open connections per pod: real process trees for the lab, canned API answers for a cluster.

The lab's pods are found through container records as the lab's kubelets write them
(``<node state>/containers/*.json``); here a test writes them for processes it starts
itself. A real PostgreSQL server (integration) shows the connections of a database pod
counted both ways: from its process tree and through SQL.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyodbc
import pytest

from lab.cluster import Layout
from lab.engine import Engine
from loadgen.tenants import Tenant, load_tenants
from probes.errors import ProbeError
from probes.pod_sources import LabPods, PodRef, lab_layout, lab_pod_members, pod_source
from probes.pod_sources_cluster import ClusterPods, count_sessions
from tests.soak_fakes import FakeApi, fake_api

NODE = "lab-node-1"

# The container's main process: a child that holds 24 MiB, two TCP connections to the test
# (one of which the test closes: CLOSE_WAIT on this side) and a listening socket.
MAIN = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
while True:
    time.sleep(1)
"""
CHILD = """
import socket, sys, time
hold = bytearray(24 * 1024 * 1024)
for i in range(0, len(hold), 4096):
    hold[i] = 1
port = int(sys.argv[1])
first = socket.create_connection(("127.0.0.1", port))
second = socket.create_connection(("127.0.0.1", port))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print("connected", flush=True)
while True:
    time.sleep(1)
"""


def _layout(root: Path) -> Layout:
    layout = Layout(root)
    layout.root.mkdir(parents=True)
    layout.config.write_text(json.dumps({"port": 1, "nodes": [NODE]}))
    return layout


def _record(layout: Layout, uid: str, pid: int, created: float | None = None) -> None:
    folder = layout.node_state(NODE) / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    when = psutil.Process(pid).create_time() if created is None else created
    record = {"namespace": "ns", "pod": "p", "uid": uid, "container": "main", "members": [[pid, when]]}
    (folder / f"{uid}_main.json").write_text(json.dumps(record))


@pytest.fixture
def container() -> Iterator[tuple[int, int, socket.socket, list[socket.socket]]]:
    """A process tree like a container's, connected twice to a server socket of the test."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    main = subprocess.Popen([sys.executable, "-c", MAIN, CHILD, str(port)], stdout=subprocess.PIPE)
    accepted: list[socket.socket] = []
    try:
        assert main.stdout is not None
        child = int(main.stdout.readline())
        server.settimeout(10)
        accepted = [server.accept()[0], server.accept()[0]]
        yield main.pid, child, server, accepted
    finally:
        for conn in accepted:
            conn.close()
        for proc in [*psutil.Process(main.pid).children(recursive=True), psutil.Process(main.pid)]:
            proc.kill()
        main.wait(10)
        server.close()


def test_a_lab_pod_is_its_recorded_process_tree_with_pss_and_its_tcp_connections(
    container: tuple[int, int, socket.socket, list[socket.socket]], tmp_path: Path
) -> None:
    main, child, _server, accepted = container
    layout = _layout(tmp_path / "lab")
    _record(layout, "uid-1", main)  # only the main process is recorded: the child is found below it
    assert lab_pod_members(layout) == {"uid-1": [(main, psutil.Process(main).create_time())]}
    pod = PodRef("ns", "p", "uid-1", "mssql", "t1")
    source = LabPods(layout=layout)
    reading = source.read([pod])
    assert reading.errors == []
    usage = reading.usage["ns/p"]
    assert usage.processes == 2 and usage.memory == "pss"
    assert usage.memory_bytes is not None and usage.memory_bytes >= 24 * 1024 * 1024
    assert usage.connections == 2  # the listening socket is not a connection
    accepted[0].close()  # the peer hangs up: the child's socket sits in CLOSE_WAIT, still open
    time.sleep(0.2)
    states = {c.status for c in psutil.Process(child).net_connections(kind="tcp") if c.raddr}
    assert psutil.CONN_CLOSE_WAIT in states
    assert source.read([pod]).usage["ns/p"].connections == 2


def test_a_recycled_pid_or_a_pod_without_records_is_not_measured(
    container: tuple[int, int, socket.socket, list[socket.socket]], tmp_path: Path
) -> None:
    main, _child, _server, _accepted = container
    layout = _layout(tmp_path / "lab")
    _record(layout, "uid-1", main, created=psutil.Process(main).create_time() - 60)  # another process
    reading = LabPods(layout=layout).read(
        [PodRef("ns", "p", "uid-1", "mssql"), PodRef("ns", "q", "u2", "operator")]
    )
    assert reading.usage["ns/p"].memory_bytes is None and reading.usage["ns/p"].connections is None
    assert reading.usage["ns/q"].memory_bytes is None
    assert len(reading.errors) == 2 and all("record no running process" in e for e in reading.errors)


def test_no_lab_is_one_line_and_no_numbers(tmp_path: Path) -> None:
    reading = LabPods(layout=Layout(tmp_path / "none")).read([PodRef("ns", "p", "u", "mssql")])
    assert reading.usage["ns/p"].memory_bytes is None
    assert (
        len(reading.errors) == 1 and "no embedded lab" in reading.errors[0] and "lab up" in reading.errors[0]
    )
    with pytest.raises(ProbeError, match="only 'lab' and 'cluster'"):
        pod_source("local")


# -- a cluster ----------------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    with fake_api(tmp_path, monkeypatch) as served:
        yield served


def _metrics(*pods: tuple[str, list[str]]) -> dict[str, Any]:
    return {
        "kind": "PodMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "items": [
            {
                "metadata": {"name": name, "namespace": "tenants"},
                "containers": [
                    {"name": f"c{i}", "usage": {"cpu": "1m", "memory": m}} for i, m in enumerate(mem)
                ],
            }
            for name, mem in pods
        ],
    }


METRICS = "/apis/metrics.k8s.io/v1beta1/namespaces/tenants/pods"
T1 = PodRef("tenants", "t1-0", "u1", "mssql", "t1")
T2 = PodRef("tenants", "t2-0", "u2", "mssql", "t2")
OP = PodRef("tenants", "op", "u3", "operator")


def test_cluster_pod_memory_is_the_working_set_of_its_containers(api: FakeApi) -> None:
    api.set(METRICS, _metrics(("t1-0", ["100Mi", "28Mi"]), ("op", ["64Mi"])))
    reading = ClusterPods(tenants=dict, count=lambda t: 0).read([T1, T2, OP])
    assert reading.usage["tenants/t1-0"].memory_bytes == 128 * 1024 * 1024
    assert reading.usage["tenants/t1-0"].memory == "working_set"
    assert reading.usage["tenants/op"].memory_bytes == 64 * 1024 * 1024
    assert reading.usage["tenants/t2-0"].memory_bytes is None
    assert any("memory of pod tenants/t2-0: metrics-server has no sample" in e for e in reading.errors)


@pytest.mark.parametrize(
    ("status", "fix"), [(404, "install metrics-server"), (403, "metrics.k8s.io API group")]
)
def test_pod_metrics_not_served_or_refused_is_one_line_with_the_fix(
    api: FakeApi, status: int, fix: str
) -> None:
    api.set(METRICS, None, status=status)
    reading = ClusterPods(tenants=dict, count=lambda t: 0).read([T1, T2])
    memory = [e for e in reading.errors if e.startswith("pod memory in tenants")]
    assert len(memory) == 1 and fix in memory[0] and str(status) in memory[0]
    assert all(u.memory_bytes is None for u in reading.usage.values())


def test_cluster_connections_are_counted_per_tenant_and_the_operators_limit_is_said_once(
    api: FakeApi,
) -> None:
    api.set(METRICS, _metrics(("t1-0", ["1Mi"]), ("t2-0", ["1Mi"]), ("op", ["1Mi"])))
    counted: list[str] = []

    def count(tenant: Any) -> int:
        counted.append(tenant)
        if tenant == "conn-t2":
            raise ProbeError("counting sessions on t2: permission denied: grant VIEW SERVER STATE")
        return 7

    t3 = PodRef("tenants", "t3-0", "u4", "mssql", "t3")
    source = ClusterPods(tenants=lambda: {"t1": "conn-t1", "t2": "conn-t2"}, count=count)
    reading = source.read([T1, T2, t3, OP])
    assert reading.usage["tenants/t1-0"].connections == 7
    assert (
        reading.usage["tenants/t2-0"].connections is None and reading.usage["tenants/op"].connections is None
    )
    assert sorted(counted) == ["conn-t1", "conn-t2"]
    assert any("connections of pod tenants/t2-0: counting sessions on t2" in e for e in reading.errors)
    assert any("no connection details for tenant t3" in e for e in reading.errors)
    assert not [e for e in reading.errors if "operator pods" in e], "a limit of the target is not a failure"
    said = [e for e in reading.limits if "operator pods" in e]
    assert len(said) == 1 and "not measurable on a cluster" in said[0]


@pytest.mark.integration
def test_a_database_pods_connections_from_its_tree_and_through_sql(engine: Engine, tmp_path: Path) -> None:
    inst = engine.create("pods")
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [inst.tenant()]}))
    (tenant,) = load_tenants(path)
    assert isinstance(tenant, Tenant)
    layout = _layout(tmp_path / "lab")
    postmaster = engine.pid("pods")
    assert postmaster is not None
    _record(layout, "uid-db", postmaster)
    pod = PodRef("tenants", "pods-0", "uid-db", "mssql", "pods")
    source = LabPods(layout=layout)
    before = source.read([pod]).usage["tenants/pods-0"]
    baseline = count_sessions(tenant)
    held = [pyodbc.connect(tenant.connection_string(), autocommit=True) for _ in range(3)]
    try:
        after = source.read([pod]).usage["tenants/pods-0"]
        assert after.connections is not None and before.connections is not None
        assert after.connections - before.connections == 3  # one backend socket per session
        assert after.memory == "pss" and after.memory_bytes is not None and after.memory_bytes > 0
        assert count_sessions(tenant) - baseline == 3  # the asking session is left out
    finally:
        for conn in held:
            conn.close()
    wrong = dataclasses.replace(tenant, port=1)
    with pytest.raises(ProbeError, match="counting sessions on") as info:
        count_sessions(wrong, timeout=2)
    assert "\n" not in str(info.value) and "Pwd" not in str(info.value)


def test_the_lab_measured_is_the_one_kubeconfig_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = _layout(tmp_path / "named")
    monkeypatch.setenv("HARNESS_LAB_DIR", str(tmp_path / "default"))
    monkeypatch.setenv("KUBECONFIG", str(layout.kubeconfig))
    assert lab_layout() == layout
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "cluster-kubeconfig"))  # not a lab's
    assert lab_layout() == Layout(tmp_path / "default")
