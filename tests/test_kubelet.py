"""The kubelet: pods as real process trees against a real API server (``python -m lab.api``).

The pure rules (image map, environment, phase, status, probe parsing, executor) are
tested directly; everything else runs a real kubelet process (``python -m lab.kubelet``)
on a node of its own and checks what a Kubernetes client sees: Ready, restartCount,
graceful deletion (SIGTERM, grace, SIGKILL, confirmed delete), ``kubectl logs``, and an
engine pod (a real PostgreSQL) keeping its data across a pod recreate and a kubelet crash.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab import processes
from lab.engine import Engine, free_port
from lab.executor import main as executor_main
from lab.kubelet import images, podspec
from lab.kubelet.container_log import (
    KEEP_RETIRED,
    MAX_FILES,
    LogPump,
    previous_log,
    rotated_logs,
    start_new_run,
)
from lab.kubelet.engine_image import lock_is_stale
from lab.kubelet.probes import sqlcmd_args
from lab.kubelet.status import ContainerState, build_status, pod_phase
from tests.lab_fixtures import KubeletNode, kubelet_node
from tests.test_api_support import wait_for

NS = "default"
NODE = "lab-test-node"


# -- pure rules ---------------------------------------------------------------------------------------


def test_image_map_names_and_entry_points() -> None:
    assert images.image_name("docker.io/mssql-lab/engine:15") == ("mssql-lab/engine", "15")
    assert images.image_name("busybox") == ("busybox", "latest")
    assert images.image_name("registry:5000/x/y:1@sha256:ab") == ("registry:5000/x/y", "1")
    launch = images.launch_for({"image": "mssql-lab/executor:1", "args": ["sleep", "$(N)"]}, {"N": "2"})
    assert launch.argv == [sys.executable, "-m", "lab.executor", "sleep", "2"]
    engine = images.launch_for({"image": "mssql-lab/engine:15"}, {})
    assert engine.is_engine and engine.argv[1:] == ["-m", "lab.kubelet.engine_image"]
    replaced = images.launch_for({"image": "mssql-lab/operator:1", "command": ["python3", "-c", "pass"]}, {})
    assert replaced.argv == [sys.executable, "-c", "pass"]
    with pytest.raises(podspec.ConfigError, match="no entry point"):
        images.launch_for({"image": "busybox"}, {})
    assert images.engine_port({"ports": [{"containerPort": 1}, {"name": "mssql", "containerPort": 2}]}) == 2
    with pytest.raises(podspec.ConfigError, match="containerPort"):
        images.engine_port({"name": "db"})


def _lookup(objects: dict[tuple[str, str], dict[str, Any]]) -> podspec.Lookup:
    return lambda plural, namespace, name: objects.get((plural, name))


def test_environment_resolution() -> None:
    secret = {"data": {"password": base64.b64encode(b"p@ss").decode()}}
    objects = {("secrets", "creds"): secret, ("configmaps", "cfg"): {"data": {"mode": "fast"}}}
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
        "spec": {"nodeName": "n"},
    }
    container = {
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$$(A)-$(MISSING)"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        ],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
    }
    env = podspec.resolve_env(pod, container, _lookup(objects), {"BASE": "b"})
    assert env["B"] == "1-$(A)-$(MISSING)"
    assert (env["PW"], env["MODE"], env["POD"], env["APP"], env["CFG_mode"]) == (
        "p@ss",
        "fast",
        "p",
        "x",
        "fast",
    )
    assert env["BASE"] == "b" and "OPT" not in env
    missing = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}}]}
    with pytest.raises(podspec.ConfigError) as info:
        podspec.resolve_env(pod, missing, _lookup(objects))
    assert (
        info.value.reason == "CreateContainerConfigError" and "couldn't find key user" in info.value.message
    )


def test_mounts_map_volumes_to_folders(tmp_path: Path) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-p"}},
                {"name": "tmp", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
            ]
        },
    }
    container = {
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/opt/mssql"},
            {"name": "tmp", "mountPath": "/tmp/work", "subPath": "a"},
            {"name": "cfg", "mountPath": "/etc/cfg"},
        ]
    }
    with pytest.raises(podspec.ConfigError, match='persistentvolumeclaim "data-p" not found'):
        podspec.resolve_mounts(pod, container, tmp_path / "state", tmp_path / "vol", _lookup({}))
    objects = {
        ("persistentvolumeclaims", "data-p"): {"metadata": {}},
        ("configmaps", "cfg"): {"data": {"k": "v"}},
    }
    mounts = podspec.resolve_mounts(pod, container, tmp_path / "state", tmp_path / "vol", _lookup(objects))
    assert mounts["/var/opt/mssql"] == tmp_path / "vol" / "ns" / "data-p"
    assert mounts["/tmp/work"] == tmp_path / "state" / "emptydir" / "u1" / "tmp" / "a"
    assert (mounts["/etc/cfg"] / "k").read_text() == "v"
    assert all(folder.is_dir() for folder in mounts.values())
    assert json.loads(podspec.mounts_env(mounts))["/var/opt/mssql"] == str(tmp_path / "vol" / "ns" / "data-p")
    assert podspec.host_path_for("/var/opt/mssql/data", mounts) == mounts["/var/opt/mssql"] / "data"


def _c(state: str, code: int | None = None, last: bool = False) -> ContainerState:
    return ContainerState(
        "c", "i", state=state, exit_code=code, last_terminated={"exitCode": 1} if last else None
    )


def test_pod_phase_follows_the_kubelet_rules() -> None:
    assert pod_phase("Always", [], [_c("waiting")]) == "Pending"
    assert pod_phase("Always", [], [_c("running"), _c("terminated", 0)]) == "Running"
    assert pod_phase("Always", [], [_c("terminated", 0)]) == "Running"
    assert pod_phase("Always", [], [_c("waiting", last=True)]) == "Running"
    assert pod_phase("Never", [], [_c("terminated", 0), _c("terminated", 0)]) == "Succeeded"
    assert pod_phase("Never", [], [_c("terminated", 0), _c("terminated", 2)]) == "Failed"
    assert pod_phase("OnFailure", [], [_c("terminated", 2)]) == "Running"
    assert pod_phase("OnFailure", [], [_c("terminated", 0)]) == "Succeeded"
    assert pod_phase("Never", [_c("terminated", 1)], [_c("waiting")]) == "Failed"
    assert pod_phase("Always", [_c("running")], [_c("waiting")]) == "Pending"
    assert pod_phase("Always", [], [_c("running")], previous="Failed") == "Failed"


def test_status_keeps_transition_times_and_foreign_conditions() -> None:
    running = ContainerState(
        "c", "busybox", state="running", started_at=100.0, ready=True, started=True, pid=7
    )
    first = build_status({}, phase="Running", init=[], regular=[running], start_time=100.0, now=100.0)
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "reason" not in ready
    assert first["containerStatuses"][0]["state"] == {"running": {"startedAt": "1970-01-01T00:01:40Z"}}
    first["conditions"].append({"type": "example.com/gate", "status": "True"})
    later = build_status(first, phase="Running", init=[], regular=[running], start_time=999.0, now=500.0)
    assert (
        next(c for c in later["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
        == ready["lastTransitionTime"]
    )
    assert later["startTime"] == first["startTime"]
    assert any(c["type"] == "example.com/gate" for c in later["conditions"])
    running.ready = False
    unready = build_status(later, phase="Running", init=[], regular=[running], start_time=0, now=600.0)
    cond = next(c for c in unready["conditions"] if c["type"] == "Ready")
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == (
        "False",
        "ContainersNotReady",
        "1970-01-01T00:10:00Z",
    )


def test_sqlcmd_probe_commands_are_recognised() -> None:
    env = {"MSSQL_SA_PASSWORD": "pw"}
    direct = sqlcmd_args(["/opt/mssql-tools18/bin/sqlcmd", "-Q", "SELECT 1"], env)
    assert direct == ["-Q", "SELECT 1"]
    shell = sqlcmd_args(
        ["/bin/sh", "-c", 'sqlcmd -S localhost -U sa -P "$MSSQL_SA_PASSWORD" -Q "SELECT 1"'], env
    )
    assert shell == ["-S", "localhost", "-U", "sa", "-P", "pw", "-Q", "SELECT 1"]
    assert sqlcmd_args(["pg_isready"], env) is None


def test_executor_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert executor_main(["exit", "7"]) == 7
    assert executor_main(["sleep", "0"]) == 0
    assert executor_main(["exit", "300"]) == 2
    assert executor_main(["fly"]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.integration
def test_engine_image_keeps_live_locks_and_clears_stale_ones(engine: Engine, tmp_path: Path) -> None:
    inst = engine.create("locks")
    lock = inst.data / "postmaster.pid"
    assert not lock_is_stale(lock, inst.data), "the lock of a running server must be kept"
    assert lock_is_stale(lock, tmp_path), "a server working in another data directory holds no lock here"
    fake = tmp_path / "postmaster.pid"
    fake.write_text(f"{os.getpid()}\n{tmp_path}\n")
    assert lock_is_stale(fake, tmp_path), "a pid reused by a non-server process"
    gone = subprocess.Popen(["true"])
    gone.wait()
    fake.write_text(f"{gone.pid}\n")
    assert lock_is_stale(fake, tmp_path)


# -- container log files -------------------------------------------------------------------------------


def test_log_pump_rotates_at_its_size_limit_keeping_whole_records(tmp_path: Path) -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    path = tmp_path / "default_big.log"
    pump = LogPump("big", {out_r: b"stdout", err_r: b"stderr"}, path, max_size=4096)
    pump.start()
    for i in range(600):
        os.write(out_w, b"line %05d\n" % i)
    os.close(out_w)
    os.close(err_w)
    pump.join(5)
    assert not pump.is_alive()
    rotated = rotated_logs(path)
    assert len(rotated) == MAX_FILES - 1, [p.name for p in rotated]
    assert all(4096 - 64 < p.stat().st_size <= 4096 for p in rotated), [p.stat().st_size for p in rotated]
    numbers = []
    for file in (*rotated, path):
        data = file.read_bytes()
        assert data.endswith(b"\n")
        for record in data.splitlines():
            stamp, stream, tag, text = record.split(b" ", 3)
            assert (stamp[-1:], stream, tag) == (b"Z", b"stdout", b"F"), record
            numbers.append(int(text.split()[1]))
    assert numbers == list(range(numbers[0], 600)) and numbers[0] > 0, "the newest files, in order"
    assert path.stat().st_size < 4096


def test_a_new_pod_of_the_same_name_starts_an_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "default_db-0.log"
    other = tmp_path / "previous" / "default_db-0_main.abcdef12.log"
    other.parent.mkdir()
    other.write_text("another container's retired log\n")
    for n in range(KEEP_RETIRED + 2):
        path.write_text(f"old pod {n}\n")  # left behind: its kubelet died before rotating it
        previous_log(path).write_text("its previous run\n")
        path.with_name(path.name + ".20260101-000000").write_text("its older part\n")
        start_new_run(path, keep_previous=False)
        assert not path.exists() and not previous_log(path).exists() and not rotated_logs(path)
    kept = sorted(p.read_text() for p in (tmp_path / "previous").glob("default_db-0.*.log"))
    assert kept == [f"old pod {n}\n" for n in range(2, KEEP_RETIRED + 2)]
    assert other.exists(), "only retired logs of the same file are pruned"
    path.write_text("run 1\n")
    start_new_run(path, keep_previous=True)
    assert previous_log(path).read_text() == "run 1\n" and not path.exists()


# -- a real kubelet against a real API server ---------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> Iterator[KubeletNode]:
    with kubelet_node("test-kubelet-", lambda root: KubeletNode(root, NODE)) as lab_node:
        yield lab_node
        assert lab_node.kubelet is not None
        lab_node.kubelet.send_signal(signal.SIGTERM)
        assert lab_node.kubelet.wait(30) == 0, "the kubelet did not stop cleanly on SIGTERM"
        left = lab_node.lab_processes()
        assert not left, f"processes left after the kubelet stopped: {[p.pid for p in left]}"
        assert not list((lab_node.state / "containers").glob("*.json"))


def _pod(name: str, command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if command is not None:
        container["command"] = command
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeName": NODE, "containers": [container], **spec},
    }


def _condition(pod: dict[str, Any] | None, ctype: str = "Ready") -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conditions)


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["status"]["containerStatuses"][0])


def _ready(node: KubeletNode, name: str, timeout: float = 15.0) -> dict[str, Any]:
    return dict(
        wait_for(lambda: (p := node.client.get_or_none("pods", name, NS)) and _condition(p) and p, timeout)
    )


def _gone(node: KubeletNode, name: str, timeout: float = 15.0) -> None:
    wait_for(lambda: node.client.get_or_none("pods", name, NS) is None, timeout)


def _pid(pod: dict[str, Any]) -> int:
    return int(_container(pod)["containerID"].removeprefix("lab://"))


@pytest.mark.integration
def test_node_registers_and_heartbeats(node: KubeletNode) -> None:
    obj = wait_for(lambda: node.client.get_or_none("nodes", NODE), 10)
    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    assert obj["metadata"]["labels"]["lab.mssql.io/node"] == NODE
    lease = wait_for(lambda: node.client.get_or_none("leases", NODE, "kube-node-lease"), 10)
    renewed = lease["spec"]["renewTime"]
    assert _condition(obj)
    wait_for(lambda: node.client.get("leases", NODE, "kube-node-lease")["spec"]["renewTime"] != renewed, 5)


@pytest.mark.integration
def test_pod_runs_logs_and_stops_gracefully(node: KubeletNode) -> None:
    script = "echo hello from $HOSTNAME; trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.05; done"
    began = time.monotonic()
    node.client.create("pods", _pod("graceful", ["sh", "-c", script], terminationGracePeriodSeconds=20), NS)
    pod = _ready(node, "graceful")
    ready_after = time.monotonic() - began
    status = pod["status"]
    assert (status["phase"], status["podIP"], _container(pod)["restartCount"]) == ("Running", "127.0.0.1", 0)
    assert ready_after < 5, f"pod took {ready_after:.2f}s to be Ready"
    pid = _pid(pod)
    assert psutil.Process(pid).is_running()
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(node.kubeconfig), "logs", "graceful", "-n", NS],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert "hello from graceful" in out
    version = node.client.get("pods", "graceful", NS)["metadata"]["resourceVersion"]
    time.sleep(1.5)
    assert node.client.get("pods", "graceful", NS)["metadata"]["resourceVersion"] == version, "status churn"
    began = time.monotonic()
    node.client.delete("pods", "graceful", NS)
    _gone(node, "graceful")
    assert time.monotonic() - began < 5, "a pod that exits on SIGTERM must not wait out its grace period"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    previous = list((node.logs / "previous").glob(f"{NS}_graceful.*.log"))
    assert previous and "got TERM" in previous[0].read_text()


@pytest.mark.integration
def test_sigkill_after_the_grace_period(node: KubeletNode) -> None:
    script = "trap '' TERM; sh -c 'trap \"\" TERM; sleep 600' & echo started; wait"
    node.client.create("pods", _pod("stubborn", ["sh", "-c", script], terminationGracePeriodSeconds=1), NS)
    pod = _ready(node, "stubborn")
    tree = wait_for(lambda: (t := processes.process_tree(_pid(pod))) and len(t) >= 3 and t, 5)
    began = time.monotonic()
    node.client.delete("pods", "stubborn", NS)
    _gone(node, "stubborn")
    took = time.monotonic() - began
    assert 0.9 <= took < 5, f"deletion took {took:.2f}s with a 1 s grace period"
    assert not processes.wait_gone(tree, 2), "a process of the container survived the deletion"


@pytest.mark.integration
def test_crashing_container_restarts_with_back_off(node: KubeletNode) -> None:
    node.client.create("pods", _pod("crasher", ["sh", "-c", "echo run; sleep 0.2; exit 3"]), NS)

    def restarted() -> dict[str, Any] | None:
        pod = node.client.get("pods", "crasher", NS)
        statuses = pod["status"].get("containerStatuses") or []
        return pod if statuses and statuses[0]["restartCount"] >= 3 else None

    pod = wait_for(restarted, 20)
    cs = _container(pod)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running"
    log = node.client.request("GET", f"/api/v1/namespaces/{NS}/pods/crasher/log")
    assert log in ("", "run\n")  # each run's log is its own: only the current run's lines
    previous = node.client.request(
        "GET", f"/api/v1/namespaces/{NS}/pods/crasher/log", params={"previous": "true"}
    )
    assert previous == "run\n"
    node.client.delete("pods", "crasher", NS)
    _gone(node, "crasher")


@pytest.mark.integration
def test_restart_policies_and_the_executor_image(node: KubeletNode) -> None:
    exe = {"image": "mssql-lab/executor:1"}
    node.client.create(
        "pods", _pod("job-ok", container={**exe, "args": ["sleep", "0.2"]}, restartPolicy="Never"), NS
    )
    node.client.create(
        "pods", _pod("job-fail", container={**exe, "args": ["exit", "4"]}, restartPolicy="Never"), NS
    )
    node.client.create(
        "pods",
        _pod(
            "retry", ["sh", "-c", "test -e retried || { touch retried; exit 1; }"], restartPolicy="OnFailure"
        ),
        NS,
    )

    def phase(name: str, wanted: str) -> dict[str, Any] | None:
        pod = node.client.get("pods", name, NS)
        return pod if pod["status"].get("phase") == wanted else None

    ok = wait_for(lambda: phase("job-ok", "Succeeded"), 15)
    failed = wait_for(lambda: phase("job-fail", "Failed"), 15)
    retried = wait_for(lambda: phase("retry", "Succeeded"), 15)
    assert _container(ok)["state"]["terminated"]["reason"] == "Completed"
    assert _container(failed)["state"]["terminated"]["exitCode"] == 4
    assert _container(failed)["restartCount"] == 0
    assert _container(retried)["restartCount"] == 1
    assert not _condition(ok)
    log = node.client.request("GET", f"/api/v1/namespaces/{NS}/pods/job-fail/log")
    assert "exiting with 4" in log
    for name in ("job-ok", "job-fail", "retry"):
        node.client.delete("pods", name, NS)
    for name in ("job-ok", "job-fail", "retry"):
        _gone(node, name)


@pytest.mark.integration
def test_init_containers_and_several_containers(node: KubeletNode) -> None:
    pod = _pod(
        "multi",
        volumes=[{"name": "shared", "emptyDir": {}}],
        initContainers=[
            {
                "name": "prepare",
                "image": "busybox",
                "volumeMounts": [{"name": "shared", "mountPath": "/s"}],
                "command": [
                    "sh",
                    "-c",
                    'sleep 0.3; echo prepared > "$(echo $LAB_MOUNTS | cut -d\'"\' -f4)/note"',
                ],
            },
        ],
        container={
            "name": "a",
            "command": ["sh", "-c", "echo from-a; sleep 600"],
            "volumeMounts": [{"name": "shared", "mountPath": "/s"}],
        },
    )
    pod["spec"]["containers"].append(
        {"name": "b", "image": "busybox", "command": ["sh", "-c", "echo from-b; sleep 600"]}
    )
    node.client.create("pods", pod, NS)
    pending = wait_for(
        lambda: (p := node.client.get("pods", "multi", NS))["status"].get("initContainerStatuses") and p, 5
    )
    assert pending["status"]["phase"] == "Pending"
    ready = _ready(node, "multi")
    init = ready["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0 and _condition(ready, "Initialized")
    folder = node.state / "emptydir" / ready["metadata"]["uid"] / "shared"
    assert (folder / "note").read_text() == "prepared\n"
    base = f"/api/v1/namespaces/{NS}/pods/multi/log"
    wait_for(lambda: "from-a" in node.client.request("GET", base, params={"container": "a"}), 5)
    assert "from-b" in wait_for(lambda: node.client.request("GET", base, params={"container": "b"}), 5)
    assert "from-b" not in node.client.request("GET", base, params={"container": "a"})
    node.client.delete("pods", "multi", NS, grace=1)
    _gone(node, "multi")


@pytest.mark.integration
def test_environment_volumes_and_probes(node: KubeletNode) -> None:
    node.client.create(
        "configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "fast"}},
        NS,
    )
    port = free_port()
    flag = node.root / "flags"
    flag.mkdir()
    pod = _pod(
        "probed",
        [
            "sh",
            "-c",
            "echo MODE=$MODE PW=$PW SVC=$KUBERNETES_SERVICE_PORT; echo MOUNTS=$LAB_MOUNTS; sleep 600",
        ],
        volumes=[{"name": "work", "emptyDir": {}}, {"name": "flags", "hostPath": {"path": str(flag)}}],
        container={
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "later", "key": "pw"}}},
            ],
            "volumeMounts": [
                {"name": "work", "mountPath": "/work"},
                {"name": "flags", "mountPath": "/flags"},
            ],
            "ports": [{"name": "web", "containerPort": port}],
            "readinessProbe": {"exec": {"command": ["test", "-e", str(flag / "ready")]}, "periodSeconds": 1},
            "livenessProbe": {
                "tcpSocket": {"port": "web"},
                "periodSeconds": 1,
                "failureThreshold": 2,
                "initialDelaySeconds": 1,
            },
        },
    )
    node.client.create("pods", pod, NS)
    waiting = wait_for(
        lambda: (p := node.client.get("pods", "probed", NS))["status"].get("containerStatuses") and p, 10
    )
    state = _container(waiting)["state"]
    assert state["waiting"]["reason"] == "CreateContainerConfigError"
    assert 'secret "later" not found' in state["waiting"]["message"]
    node.client.create(
        "secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"}, "stringData": {"pw": "s3cret"}},
        NS,
    )
    running = wait_for(
        lambda: "running" in _container(p := node.client.get("pods", "probed", NS))["state"] and p, 10
    )
    assert not _condition(running), "ready before its readiness probe passed"
    folder = node.state / "emptydir" / running["metadata"]["uid"] / "work"
    log_path = f"/api/v1/namespaces/{NS}/pods/probed/log"
    log = wait_for(lambda: "MOUNTS" in (t := node.client.request("GET", log_path)) and t, 5)
    assert "MODE=fast PW=s3cret" in log and f"SVC={node.api.port}" in log
    mounts = json.loads(log.split("MOUNTS=", 1)[1].splitlines()[0])
    assert mounts == {"/work": str(folder), "/flags": str(flag)}
    # Liveness: nothing listens on the port, so the container is killed and restarted.
    wait_for(lambda: _container(node.client.get("pods", "probed", NS))["restartCount"] >= 1, 15)
    # Readiness: the probe passes once the file exists.
    (flag / "ready").write_text("")
    _ready(node, "probed", 10)
    node.client.delete("pods", "probed", NS, grace=1)
    _gone(node, "probed")
    assert not folder.exists(), "the emptyDir must go with the pod"


def _engine_pod(port: int) -> dict[str, Any]:
    secret = {"name": "db-credentials"}
    return _pod(
        "db-0",
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}],
        terminationGracePeriodSeconds=10,
        container={
            "name": "mssql",
            "image": "mssql-lab/engine:15",
            "ports": [{"name": "mssql", "containerPort": port}],
            "env": [
                {"name": "MSSQL_SA_PASSWORD", "valueFrom": {"secretKeyRef": {**secret, "key": "password"}}},
                {"name": "LAB_DB_USER", "valueFrom": {"secretKeyRef": {**secret, "key": "username"}}},
                {"name": "LAB_DB_NAME", "value": "harness"},
            ],
            "volumeMounts": [{"name": "data", "mountPath": "/var/opt/mssql"}],
            "readinessProbe": {
                "exec": {"command": ["/opt/mssql-tools18/bin/sqlcmd", "-Q", "SELECT 1"]},
                "periodSeconds": 1,
            },
        },
    )


def _sql(port: int, password: str, sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": password}
    proc = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-tA",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "harness",
            "-d",
            "harness",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.integration
@pytest.mark.slow
def test_engine_pod_keeps_its_data_across_recreate_and_kubelet_crashes(node: KubeletNode) -> None:
    password = "it's a \\ secret"
    node.client.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-credentials"},
            "stringData": {"username": "harness", "password": password},
        },
        NS,
    )
    node.client.create(
        "persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-db-0"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        NS,
    )
    port = free_port()
    began = time.monotonic()
    node.client.create("pods", _engine_pod(port), NS)
    _ready(node, "db-0", 30)
    first_ready = time.monotonic() - began
    assert (
        _sql(
            port, password, "CREATE TABLE kept(x int); INSERT INTO kept VALUES (1); SELECT count(*) FROM kept"
        )
        == "1"
    )
    data_dir = node.volumes / NS / "data-db-0" / "data"
    assert (data_dir / "PG_VERSION").exists()

    # Delete and recreate: a graceful (fast) shutdown, then the same data directory.
    node.client.delete("pods", "db-0", NS)
    _gone(node, "db-0", 15)
    old_log = next((node.logs / "previous").glob(f"{NS}_db-0.*.log")).read_text()
    assert "PostgreSQL stopped (exit 0)" in old_log
    began = time.monotonic()
    node.client.create("pods", _engine_pod(port), NS)
    _ready(node, "db-0", 30)
    recreate_ready = time.monotonic() - began
    assert _sql(port, password, "INSERT INTO kept VALUES (2); SELECT count(*) FROM kept") == "2"

    # The kubelet alone crashes: its pods keep running orphaned until the next kubelet kills them.
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    node.crash_kubelet(whole_tree=False)
    assert postmaster.is_running() and postmaster.status() != psutil.STATUS_ZOMBIE
    node.start_kubelet()
    assert not processes.wait_gone([postmaster], 10), "the new kubelet left the old server running"
    wait_for(lambda: _container(node.client.get("pods", "db-0", NS))["restartCount"] == 1, 20)
    _ready(node, "db-0", 30)
    assert _sql(port, password, "SELECT count(*) FROM kept") == "2"

    # The whole node crashes (kubelet and every pod process), then comes back: the engine
    # restarts with its data, a running job pod (restartPolicy Never) counts as failed.
    job = _pod(
        "job-at-crash",
        container={"image": "mssql-lab/executor:1", "args": ["sleep", "600"]},
        restartPolicy="Never",
    )
    node.client.create("pods", job, NS)
    _ready(node, "job-at-crash")
    node.crash_kubelet(whole_tree=True)
    assert not node.lab_processes()
    began = time.monotonic()
    node.start_kubelet()
    pod = wait_for(
        lambda: (
            (p := node.client.get("pods", "db-0", NS))
            and _condition(p)
            and _container(p)["restartCount"] == 2
            and p
        ),
        30,
    )
    node_restart_ready = time.monotonic() - began
    last = _container(pod)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (137, "Error")
    assert _sql(port, password, "SELECT count(*) FROM kept") == "2"
    failed = wait_for(
        lambda: (p := node.client.get("pods", "job-at-crash", NS))["status"]["phase"] == "Failed" and p, 10
    )
    assert _container(failed)["state"]["terminated"]["exitCode"] == 137
    node.client.delete("pods", "job-at-crash", NS)
    print(
        f"engine pod Ready: first {first_ready:.2f}s (initdb), recreate {recreate_ready:.2f}s, "
        f"after node restart {node_restart_ready:.2f}s"
    )
    node.client.delete("pods", "db-0", NS)
    _gone(node, "db-0", 15)
