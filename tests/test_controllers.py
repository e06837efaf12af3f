"""The lab controllers, run by a real control plane process, with a kubelet played by the test.

:class:`FakeKubelet` registers nodes, heartbeats them, marks the pods bound to them
Running (Ready unless told otherwise) and confirms graceful deletions, the way the
real kubelet talks to the API; tests pause its heartbeats or finish pods by patching
their status. The CronJob controller runs in-process with an injected clock (the
control plane here runs without its own, ``--disable cronjob``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lab.api import write_kubeconfig
from lab.controllers.cron import CronSchedule
from lab.controllers.cronjob import CronJobController, job_name_for
from lab.controllers.loop import format_time, parse_time, template_hash
from lab.controlplane import ControlPlaneProcess, start_control_plane
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient
from lab.timing import FAST

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
_names = itertools.count()


# -- helpers shared with other test modules --------------------------------------------------


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def node_body(name: str, labels: dict[str, str] | None = None, ready: bool = True) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "lab.mssql.io/node": name, **(labels or {})},
        },
        "status": {"conditions": [_ready_condition(ready)]},
    }


def _ready_condition(ready: bool) -> Obj:
    stamp = format_time()
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "fake kubelet",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }


def pod_status(phase: str, ready: bool) -> Obj:
    stamp = format_time()
    running = phase == "Running"
    return {
        "phase": phase,
        "podIP": "127.0.0.1",
        "hostIP": "127.0.0.1",
        "startTime": stamp,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": str(ready and running), "lastTransitionTime": stamp},
            {"type": "Ready", "status": str(ready and running), "lastTransitionTime": stamp},
        ],
    }


def set_pod(client: KubeClient, ns: str, name: str, phase: str = "Running", ready: bool = True) -> None:
    """Patch a pod's status as its kubelet would."""
    client.patch("pods", name, {"status": pod_status(phase, ready)}, ns, sub="status")


class FakeKubelet:
    """Nodes that heartbeat every 0.5 s, run bound pods (status only) and confirm deletions."""

    def __init__(self, client: KubeClient, ready_pods: bool = True) -> None:
        self.client = client
        self.ready_pods = ready_pods
        self.nodes: set[str] = set()
        self.paused: set[str] = set()
        self.started: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)

    def add_node(self, name: str, labels: dict[str, str] | None = None) -> None:
        if self.client.get_or_none("nodes", name) is None:
            self.client.create("nodes", node_body(name, labels))
        self.nodes.add(name)

    def start(self) -> FakeKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + 0.5
                    for node in sorted(self.nodes - self.paused):
                        self.client.patch(
                            "nodes", node, {"status": {"conditions": [_ready_condition(True)]}}, sub="status"
                        )
                for pod in self.client.list("pods"):
                    node = pod["spec"].get("nodeName")
                    if node not in self.nodes or node in self.paused:
                        continue
                    md = pod["metadata"]
                    if md.get("deletionTimestamp"):
                        self.client.delete("pods", md["name"], md["namespace"], grace=0)
                    elif md["uid"] not in self.started and pod["status"].get("phase") == "Pending":
                        self.started.add(md["uid"])
                        set_pod(self.client, md["namespace"], md["name"], "Running", self.ready_pods)
            except ApiError:
                pass
            self._stop.wait(0.05)


def kubectl(
    kubeconfig: Path, home: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
    return subprocess.run(
        ["kubectl", *args], check=False, env=env, capture_output=True, text=True, timeout=timeout
    )


def owned_by_controller(obj: Obj, owner: Obj) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(
        r["uid"] == owner["metadata"]["uid"]
        and r.get("controller") is True
        and r.get("blockOwnerDeletion") is True
        and r["kind"] == owner["kind"]
        and r["name"] == owner["metadata"]["name"]
        for r in refs
    )


def new_namespace(client: KubeClient, prefix: str = "t") -> str:
    name = f"{prefix}{next(_names)}-{os.getpid()}"
    client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@contextmanager
def running_plane(
    root: Path, stop_within: float | None = None, **options: Any
) -> Iterator[ControlPlaneProcess]:
    """``start_control_plane(root, **options)``; when the block ends it must stop with exit code 0
    (the test shows its log's tail otherwise), within ``stop_within`` seconds when given."""
    proc = start_control_plane(root, **options)
    try:
        yield proc
    finally:
        started = time.monotonic()
        code = proc.stop()
        took = time.monotonic() - started
    assert code == 0, proc.log_path.read_text()[-2000:]
    if stop_within is not None:
        assert took < stop_within, f"SIGTERM took {took:.1f} s"


def plane_clients(
    ns_prefix: str = "t", nodes: tuple[str, ...] = (), ready_pods: bool = True
) -> tuple[Any, Any, Any]:
    """The ``api``, ``kubelet`` and ``ns`` fixtures of a module whose ``plane`` fixture runs a control
    plane: a client (module), a :class:`FakeKubelet` with ``nodes`` (module) and a fresh namespace
    named ``ns_prefix...`` per test. Use as ``api, kubelet, ns = plane_clients(...)``."""

    @pytest.fixture(scope="module")
    def api(plane: ControlPlaneProcess) -> KubeClient:
        return KubeClient(plane.url)

    @pytest.fixture(scope="module")
    def kubelet(api: KubeClient) -> Iterator[FakeKubelet]:
        fake = FakeKubelet(api, ready_pods=ready_pods).start()
        for name in nodes:
            fake.add_node(name)
        yield fake
        fake.stop()

    @pytest.fixture
    def ns(api: KubeClient) -> str:
        return new_namespace(api, ns_prefix)

    return api, kubelet, ns


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_plane(
        tmp_path_factory.mktemp("controllers") / "api", stop_within=8, disable=("cronjob",)
    ) as proc:
        yield proc


api, kubelet, ns = plane_clients(nodes=("lab-node-1", "lab-node-2", "lab-node-3"))


def _container(command: str = "sleep 3600") -> Obj:
    return {"name": "main", "image": "busybox", "command": ["sh", "-c", command]}


def _pod(name: str, selector: dict[str, str] | None = None) -> Obj:
    spec: Obj = {"containers": [_container()]}
    if selector:
        spec["nodeSelector"] = selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _node_of(api: KubeClient, ns: str, name: str) -> str | None:
    return api.get("pods", name, ns)["spec"].get("nodeName")


def _bound(api: KubeClient, ns: str, name: str) -> Callable[[], str | None]:
    return lambda: _node_of(api, ns, name)


def _condition(obj: Obj, ctype: str) -> Obj:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == ctype), {})


# -- control plane ----------------------------------------------------------------------------


def test_control_plane_bootstraps_and_writes_its_port(plane: ControlPlaneProcess, api: KubeClient) -> None:
    data = plane.log_path.parent
    assert int((data / "apiserver.port").read_text()) == plane.port
    names = {n["metadata"]["name"] for n in api.list("namespaces")}
    assert {"default", "kube-system", "kube-node-lease", "mssql-operator"} <= names
    sc = api.get("storageclasses", "lab-local")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    crds = {c["metadata"]["name"] for c in api.list("customresourcedefinitions")}
    assert "mssqlinstances.mssql.example.com" in crds


def test_a_second_control_plane_on_the_same_data_is_refused(plane: ControlPlaneProcess) -> None:
    with pytest.raises(LabError, match="another API server"):
        start_control_plane(plane.log_path.parent, timeout=10)


# -- scheduler ----------------------------------------------------------------------------------


def test_scheduler_spreads_pods_over_the_least_loaded_nodes(
    api: KubeClient, kubelet: FakeKubelet, ns: str
) -> None:
    pool = {"pool": ns}
    kubelet.add_node(f"{ns}-a", pool)
    kubelet.add_node(f"{ns}-b", pool)
    started = time.monotonic()
    api.create("pods", _pod("first", pool), ns)
    wait_for("first scheduled", lambda: _node_of(api, ns, "first"))
    latency = time.monotonic() - started
    for i in range(3):
        api.create("pods", _pod(f"p{i}", pool), ns)
    nodes = [wait_for(f"{name} scheduled", _bound(api, ns, name)) for name in ("p0", "p1", "p2")]
    placed = [_node_of(api, ns, "first"), *nodes]
    assert sorted(placed) == sorted([f"{ns}-a", f"{ns}-a", f"{ns}-b", f"{ns}-b"])
    scheduled = _condition(api.get("pods", "first", ns), "PodScheduled")
    assert scheduled["status"] == "True"
    assert latency < 1.0, f"pod created -> bound took {latency:.3f} s"
    print(f"pod created -> scheduled: {latency * 1000:.0f} ms")


def test_scheduler_respects_cordon_not_ready_and_node_selector(
    api: KubeClient, kubelet: FakeKubelet, ns: str
) -> None:
    node = f"{ns}-c"
    kubelet.add_node(node)
    api.patch("nodes", node, {"spec": {"unschedulable": True}})
    api.create("pods", _pod("cordoned", {"kubernetes.io/hostname": node}), ns)
    # a node whose kubelet reports NotReady
    dead = f"{ns}-dead"
    api.create("nodes", node_body(dead, ready=False))
    api.create("pods", _pod("on-dead", {"kubernetes.io/hostname": dead}), ns)
    api.create("pods", _pod("nowhere", {"disk": "none-has-it"}), ns)

    def unschedulable(name: str) -> str:
        cond = _condition(api.get("pods", name, ns), "PodScheduled")
        return cond.get("message", "") if cond.get("reason") == "Unschedulable" else ""

    assert "were unschedulable" in wait_for("cordoned pod refused", lambda: unschedulable("cordoned"))
    assert "were not ready" in wait_for("pod for NotReady node refused", lambda: unschedulable("on-dead"))
    assert "didn't match Pod's node affinity/selector" in wait_for(
        "unmatched selector refused", lambda: unschedulable("nowhere")
    )
    time.sleep(0.6)  # a few more scheduler passes
    assert _node_of(api, ns, "cordoned") is None
    assert _node_of(api, ns, "on-dead") is None
    api.patch("nodes", node, {"spec": {"unschedulable": False}})
    assert wait_for("uncordoned node used", lambda: _node_of(api, ns, "cordoned")) == node
    api.delete("nodes", dead)


# -- node lifecycle --------------------------------------------------------------------------------


def test_node_goes_not_ready_when_heartbeats_stop_and_its_pods_lose_ready(
    api: KubeClient, kubelet: FakeKubelet, ns: str
) -> None:
    node = f"{ns}-hb"
    kubelet.add_node(node)
    api.create("pods", _pod("app", {"kubernetes.io/hostname": node}), ns)
    wait_for(
        "pod running and ready",
        lambda: _condition(api.get("pods", "app", ns), "Ready").get("status") == "True",
    )
    kubelet.paused.add(node)
    stopped = time.time()
    wait_for(
        "node Ready=Unknown",
        lambda: _condition(api.get("nodes", node), "Ready").get("status") == "Unknown",
        timeout=FAST.node_monitor_grace + 4,
        every=0.1,
    )
    noticed = time.time() - stopped
    ready = _condition(api.get("nodes", node), "Ready")
    assert ready["reason"] == "NodeStatusUnknown"
    pod_ready = wait_for(
        "pod Ready=False",
        lambda: (c := _condition(api.get("pods", "app", ns), "Ready"))["status"] == "False" and c,
        timeout=3,
    )
    assert pod_ready["reason"] == "NodeNotReady"
    assert api.get("pods", "app", ns)["spec"]["nodeName"] == node  # never evicted
    # the last heartbeat came at most 0.5 s before `stopped`; timeout 4 s, a pass every 0.5 s
    grace = FAST.node_monitor_grace  # the suite's control planes run the fast timing profile
    assert grace - 0.6 < noticed < grace + 1.5, noticed
    print(f"heartbeats stopped -> node NotReady: {noticed:.2f} s")
    kubelet.paused.discard(node)
    wait_for("node Ready again", lambda: _condition(api.get("nodes", node), "Ready")["status"] == "True")


# -- PVC binding -------------------------------------------------------------------------------------


def _claim(name: str, storage_class: str | None = None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def test_claims_bind_to_the_default_class_and_unknown_classes_stay_pending(api: KubeClient, ns: str) -> None:
    api.create("persistentvolumeclaims", _claim("plain"), ns)
    api.create("persistentvolumeclaims", _claim("odd", "no-such-class"), ns)
    bound = wait_for(
        "claim bound",
        lambda: (c := api.get("persistentvolumeclaims", "plain", ns))["status"].get("phase") == "Bound" and c,
    )
    assert bound["spec"]["storageClassName"] == "lab-local"
    assert bound["spec"]["volumeName"] == f"pvc-{bound['metadata']['uid']}"
    assert bound["status"]["capacity"] == {"storage": "2Gi"}
    assert bound["status"]["accessModes"] == ["ReadWriteOnce"]
    time.sleep(0.5)
    assert api.get("persistentvolumeclaims", "odd", ns)["status"]["phase"] == "Pending"


# -- StatefulSet --------------------------------------------------------------------------------------


def _statefulset(name: str, replicas: int = 1, when_deleted: str | None = None) -> Obj:
    labels = {"app": name}
    spec: Obj = {
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [_container()]}},
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ],
    }
    if when_deleted:
        spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": when_deleted, "whenScaled": "Retain"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec}


def test_statefulset_keeps_stable_pods_and_claims(api: KubeClient, kubelet: FakeKubelet, ns: str) -> None:
    sts = api.create("statefulsets", _statefulset("db"), ns)
    pod = wait_for("db-0", lambda: api.get_or_none("pods", "db-0", ns))
    claim = wait_for("claim data-db-0", lambda: api.get_or_none("persistentvolumeclaims", "data-db-0", ns))
    assert owned_by_controller(pod, sts)
    assert "ownerReferences" not in claim["metadata"]  # Retain: the claim outlives the set
    assert pod["spec"]["hostname"] == "db-0" and pod["spec"]["subdomain"] == "db"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}} in pod["spec"]["volumes"]
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    wait_for(
        "claim bound",
        lambda: api.get("persistentvolumeclaims", "data-db-0", ns)["status"]["phase"] == "Bound",
    )
    wait_for(
        "status ready",
        lambda: (
            (s := api.get("statefulsets", "db", ns).get("status", {})).get("readyReplicas") == 1
            and s.get("observedGeneration") == 1
        ),
    )

    # a deleted pod comes back under the same name (after its kubelet confirmed), same claim
    api.delete("pods", "db-0", ns)
    deleted = time.monotonic()
    again = wait_for(
        "db-0 recreated",
        lambda: (
            (p := api.get_or_none("pods", "db-0", ns))
            and p["metadata"]["uid"] != pod["metadata"]["uid"]
            and p
        ),
    )
    print(f"StatefulSet pod deleted -> recreated: {(time.monotonic() - deleted) * 1000:.0f} ms")
    assert api.get("persistentvolumeclaims", "data-db-0", ns)["metadata"]["uid"] == claim["metadata"]["uid"]
    assert again["spec"].get("nodeName") or wait_for("rescheduled", lambda: _node_of(api, ns, "db-0"))

    # OrderedReady scale-up: db-1 only after db-0 is Running and Ready
    api.patch("statefulsets", "db", {"spec": {"replicas": 2}}, ns)
    wait_for("db-1", lambda: api.get_or_none("pods", "db-1", ns), timeout=10)
    assert _condition(api.get("pods", "db-0", ns), "Ready").get("status") == "True"
    wait_for("2 ready", lambda: api.get("statefulsets", "db", ns)["status"].get("readyReplicas") == 2)
    api.patch("statefulsets", "db", {"spec": {"replicas": 1}}, ns)
    wait_for("db-1 removed", lambda: api.get_or_none("pods", "db-1", ns) is None)
    assert api.get_or_none("persistentvolumeclaims", "data-db-1", ns) is not None  # whenScaled: Retain


def test_statefulset_rolls_pods_to_a_new_template(api: KubeClient, kubelet: FakeKubelet, ns: str) -> None:
    api.create("statefulsets", _statefulset("roll"), ns)
    first = wait_for(
        "roll-0 ready",
        lambda: (
            (p := api.get_or_none("pods", "roll-0", ns))
            and _condition(p, "Ready").get("status") == "True"
            and p
        ),
    )
    api.patch("statefulsets", "roll", {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}}, ns)
    second = wait_for(
        "roll-0 replaced",
        lambda: (
            (p := api.get_or_none("pods", "roll-0", ns))
            and p["metadata"]["uid"] != first["metadata"]["uid"]
            and p
        ),
    )
    assert second["metadata"]["annotations"] == {"v": "2"}
    status = wait_for(
        "revision current",
        lambda: (
            (s := api.get("statefulsets", "roll", ns)["status"])["currentRevision"] == s["updateRevision"]
            and s.get("readyReplicas") == 1
            and s
        ),
    )
    assert status["updatedReplicas"] == 1


# -- Deployment ---------------------------------------------------------------------------------------


def _deployment(name: str, replicas: int) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [_container()]}},
        },
    }


def test_deployment_creates_a_replicaset_and_rolls_on_kubectl_restart(
    api: KubeClient, kubelet: FakeKubelet, ns: str, plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", plane.url, namespace=ns)
    dep = api.create("deployments", _deployment("web", 2), ns)
    done = kubectl(kubeconfig, tmp_path, "rollout", "status", "deployment/web", "--timeout=20s")
    assert done.returncode == 0, done.stderr
    sets = api.list("replicasets", ns)
    assert len(sets) == 1
    first = sets[0]
    assert owned_by_controller(first, dep)
    digest = first["metadata"]["labels"]["pod-template-hash"]
    assert first["metadata"]["name"] == f"web-{digest}"
    assert digest == template_hash(dep["spec"]["template"])
    pods = api.list("pods", ns)
    assert len(pods) == 2 and all(owned_by_controller(p, first) for p in pods)
    assert all(p["metadata"]["labels"]["pod-template-hash"] == digest for p in pods)

    restart = kubectl(kubeconfig, tmp_path, "rollout", "restart", "deployment/web")
    assert restart.returncode == 0, restart.stderr
    started = time.monotonic()
    done = kubectl(kubeconfig, tmp_path, "rollout", "status", "deployment/web", "--timeout=30s")
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"rollout restart of 2 replicas: {time.monotonic() - started:.2f} s")
    assert "successfully rolled out" in done.stdout
    by_name = {rs["metadata"]["name"]: rs for rs in api.list("replicasets", ns)}
    assert len(by_name) == 2
    new = next(rs for name, rs in by_name.items() if name != first["metadata"]["name"])
    assert by_name[first["metadata"]["name"]]["spec"]["replicas"] == 0
    assert new["spec"]["replicas"] == 2
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    live = wait_for(
        "old pods gone",
        lambda: (
            (ps := [p for p in api.list("pods", ns) if not p["metadata"].get("deletionTimestamp")])
            and len(ps) == 2
            and ps
        ),
    )
    assert all(owned_by_controller(p, new) for p in live)
    status = api.get("deployments", "web", ns)["status"]
    assert status["updatedReplicas"] == status["availableReplicas"] == status["replicas"] == 2
    assert _condition(api.get("deployments", "web", ns), "Progressing")["reason"] == "NewReplicaSetAvailable"
    history = kubectl(kubeconfig, tmp_path, "rollout", "history", "deployment/web")
    assert history.returncode == 0 and "2" in history.stdout, history.stdout + history.stderr


def test_scale_subresource_changes_replicas(api: KubeClient, kubelet: FakeKubelet, ns: str) -> None:
    api.create("deployments", _deployment("scaled", 1), ns)
    wait_for("1 pod", lambda: len(api.list("pods", ns)) == 1)
    api.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/scaled/scale",
        {"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        "3 available",
        lambda: api.get("deployments", "scaled", ns).get("status", {}).get("availableReplicas") == 3,
    )


# -- Job -----------------------------------------------------------------------------------------------


def _job(name: str, completions: int = 1, backoff: int = 6) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": 1,
            "backoffLimit": backoff,
            "template": {"spec": {"restartPolicy": "Never", "containers": [_container("true")]}},
        },
    }


def _job_pods(api: KubeClient, ns: str, job: str) -> list[Obj]:
    return api.list("pods", ns, labels=f"batch.kubernetes.io/job-name={job}")


def _one_running_pod(api: KubeClient, ns: str, job: str, seen: set[str]) -> Obj:
    def fresh() -> Obj | None:
        for p in _job_pods(api, ns, job):
            if p["metadata"]["uid"] not in seen and p["status"].get("phase") == "Running":
                return p
        return None

    pod: Obj = wait_for(f"a new running pod of {job}", fresh)
    seen.add(pod["metadata"]["uid"])
    return pod


def test_job_completes_when_its_pods_succeed(api: KubeClient, kubelet: FakeKubelet, ns: str) -> None:
    job = api.create("jobs", _job("once", completions=2), ns)
    seen: set[str] = set()
    for _ in range(2):
        pod = _one_running_pod(api, ns, "once", seen)
        assert owned_by_controller(pod, job)
        assert len([p for p in _job_pods(api, ns, "once") if p["status"].get("phase") != "Succeeded"]) == 1
        set_pod(api, ns, pod["metadata"]["name"], "Succeeded", ready=False)
    done = wait_for(
        "Complete", lambda: _condition(api.get("jobs", "once", ns), "Complete").get("status") == "True"
    )
    assert done
    status = api.get("jobs", "once", ns)["status"]
    assert status["succeeded"] == 2 and status["failed"] == 0 and status["active"] == 0
    assert parse_time(status["completionTime"]) >= parse_time(status["startTime"])  # type: ignore[operator]
    assert api.get("jobs", "once", ns)["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
    }


def test_job_fails_after_its_backoff_limit(api: KubeClient, kubelet: FakeKubelet, ns: str) -> None:
    api.create("jobs", _job("flaky", backoff=1), ns)
    seen: set[str] = set()
    for _ in range(2):
        pod = _one_running_pod(api, ns, "flaky", seen)
        set_pod(api, ns, pod["metadata"]["name"], "Failed", ready=False)
    failed = wait_for("Failed", lambda: _condition(api.get("jobs", "flaky", ns), "Failed"))
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    time.sleep(0.5)
    assert len(_job_pods(api, ns, "flaky")) == 2  # no third attempt
    assert api.get("jobs", "flaky", ns)["status"]["failed"] == 2


# -- CronJob (in-process, injected clock) ---------------------------------------------------------------


def test_cron_schedules() -> None:
    at = datetime(2024, 2, 28, 23, 59, 30)
    assert CronSchedule.parse("* * * * *").next_after(at) == datetime(2024, 2, 29, 0, 0)
    assert CronSchedule.parse("*/15 * * * *").latest(at) == datetime(2024, 2, 28, 23, 45)
    assert CronSchedule.parse("@monthly").next_after(at) == datetime(2024, 3, 1, 0, 0)
    assert CronSchedule.parse("0 3 * * mon-fri").next_after(at) == datetime(2024, 2, 29, 3, 0)  # a Thursday
    assert CronSchedule.parse("0 0 29 2 *").next_after(datetime(2024, 3, 1)) == datetime(2028, 2, 29)
    assert CronSchedule.parse("0 12 1 * 0").latest(datetime(2024, 3, 5, 13, 0)) == datetime(2024, 3, 3, 12, 0)
    for bad in ("* * * *", "61 * * * *", "* * * * funday", "*/0 * * * *"):
        with pytest.raises(LabError, match="invalid cron schedule"):
            CronSchedule.parse(bad)


def test_cronjob_creates_jobs_on_schedule(api: KubeClient, ns: str) -> None:
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/5 * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [_container()]}}}
            },
        },
    }
    cj = api.create("cronjobs", body, ns)
    created = parse_time(cj["metadata"]["creationTimestamp"])
    assert created is not None
    now = [created]
    controller = CronJobController(KubeClient(api.server), clock=lambda: now[0])

    def jobs() -> list[Obj]:
        return sorted(api.list("jobs", ns), key=lambda j: j["metadata"]["name"])

    controller.reconcile_once()
    assert jobs() == []  # nothing was due between creation and now
    first_due = CronSchedule.parse("*/5 * * * *").next_after(
        datetime.fromtimestamp(created, UTC).replace(tzinfo=None)
    )
    due_ts = first_due.replace(tzinfo=UTC).timestamp()
    now[0] = due_ts + 30
    controller.reconcile_once()
    controller.reconcile_once()  # idempotent: same scheduled time, same name
    made = jobs()
    assert [j["metadata"]["name"] for j in made] == [job_name_for("tick", due_ts)]
    assert owned_by_controller(made[0], api.get("cronjobs", "tick", ns))
    status = api.get("cronjobs", "tick", ns)["status"]
    assert status["lastScheduleTime"] == format_time(due_ts)
    assert [a["name"] for a in status["active"]] == [made[0]["metadata"]["name"]]

    # Forbid: the next time is skipped while the first job runs, and runs once it finished
    now[0] = due_ts + 300 + 10
    controller.reconcile_once()
    assert len(jobs()) == 1
    api.patch(
        "jobs",
        made[0]["metadata"]["name"],
        {
            "status": {
                "conditions": [{"type": "Complete", "status": "True"}],
                "completionTime": format_time(now[0]),
            }
        },
        ns,
        sub="status",
    )
    controller.reconcile_once()
    assert [j["metadata"]["name"] for j in jobs()] == sorted(
        [job_name_for("tick", due_ts), job_name_for("tick", due_ts + 300)]
    )
    assert api.get("cronjobs", "tick", ns)["status"]["lastSuccessfulTime"] == format_time(now[0])

    # suspended: nothing new even when times pass
    api.patch("cronjobs", "tick", {"spec": {"suspend": True}}, ns)
    now[0] = due_ts + 3600
    controller.reconcile_once()
    assert len(jobs()) == 2


# -- ownership and garbage collection --------------------------------------------------------------------


def test_everything_created_is_owned_and_collected_with_its_owner(
    api: KubeClient, kubelet: FakeKubelet, ns: str
) -> None:
    dep = api.create("deployments", _deployment("gc-web", 1), ns)
    sts = api.create("statefulsets", _statefulset("gc-db", when_deleted="Delete"), ns)
    job = api.create("jobs", _job("gc-job"), ns)
    wait_for("pods", lambda: len(api.list("pods", ns)) == 3)
    wait_for("claim", lambda: api.get_or_none("persistentvolumeclaims", "data-gc-db-0", ns))
    rs = api.list("replicasets", ns)[0]
    assert owned_by_controller(rs, dep)
    assert owned_by_controller(api.get("persistentvolumeclaims", "data-gc-db-0", ns), sts)
    owners = {o["metadata"]["uid"]: o for o in (rs, sts, job)}
    for pod in api.list("pods", ns):
        refs = pod["metadata"]["ownerReferences"]
        assert len(refs) == 1 and refs[0]["uid"] in owners
        assert owned_by_controller(pod, owners[refs[0]["uid"]])

    api.delete("deployments", "gc-web", ns)
    api.delete("statefulsets", "gc-db", ns)
    api.request(
        "DELETE", f"/apis/batch/v1/namespaces/{ns}/jobs/gc-job", params={"propagationPolicy": "Background"}
    )
    wait_for("replicasets collected", lambda: api.list("replicasets", ns) == [], timeout=10)
    wait_for("pods collected", lambda: api.list("pods", ns) == [], timeout=10)
    wait_for("claim collected", lambda: api.list("persistentvolumeclaims", ns) == [], timeout=10)
