"""A lost node in the lab's control plane: taints, taint-based eviction, pod GC, the operator knob.

A real control plane (``python -m lab.controlplane``, fast timing profile) with nodes
whose kubelet is a test double that heartbeats and confirms deletions; "losing" a node
is pausing its heartbeats, so the node lifecycle controller, the taint eviction
controller and the pod garbage collector act as they would for a dead machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.controllers.taints import eviction_delay
from lab.controlplane import ControlPlaneProcess
from lab.errors import LabError
from lab.kubeclient import KubeClient
from lab.operator.node_loss import NodeLossHandler, policy_from
from lab.timing import CONFIGMAP, FAST, KUBERNETES, profile, requested
from tests.test_controllers import FakeKubelet, plane_clients, running_plane, wait_for

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
UNREACHABLE = "node.kubernetes.io/unreachable"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_plane(tmp_path_factory.mktemp("node-loss") / "api", disable=("cronjob",)) as proc:
        yield proc


api, kubelet, ns = plane_clients("loss")


def _node(kubelet: FakeKubelet, name: str) -> str:
    kubelet.add_node(name, {"test-node": name})
    return name


def _pod(
    name: str, node: str, tolerations: list[Obj] | None = None, labels: dict[str, str] | None = None
) -> Obj:
    spec: Obj = {
        "nodeSelector": {"test-node": node},
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
    }
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def _running(api: KubeClient, ns: str, name: str) -> bool:
    pod = api.get_or_none("pods", name, ns)
    return bool(pod) and pod["status"].get("phase") == "Running"


def _taints(api: KubeClient, node: str) -> dict[str, Obj]:
    spec = api.get("nodes", node).get("spec", {})
    return {f"{t['key']}:{t['effect']}": t for t in spec.get("taints") or []}


def _condition(obj: Obj | None, kind: str) -> Obj:
    conditions = (obj or {}).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def test_a_lost_node_is_tainted_unreachable_and_the_taints_go_when_it_is_back(
    api: KubeClient, kubelet: FakeKubelet
) -> None:
    node = _node(kubelet, "taint-node")
    api.patch("nodes", node, {"spec": {"taints": [{"key": "team", "value": "db", "effect": "NoSchedule"}]}})
    kubelet.paused.add(node)
    lost = time.time()
    taints = wait_for(
        "unreachable taints", lambda: (t := _taints(api, node)) and f"{UNREACHABLE}:NoExecute" in t and t, 15
    )
    seen = time.time() - lost
    assert FAST.node_monitor_grace - 0.6 < seen < FAST.node_monitor_grace + 3, seen
    assert f"{UNREACHABLE}:NoSchedule" in taints and "team:NoSchedule" in taints  # a person's taint is kept
    assert taints[f"{UNREACHABLE}:NoExecute"]["timeAdded"].endswith("Z")
    assert _condition(api.get("nodes", node), "Ready")["status"] == "Unknown"
    kubelet.paused.discard(node)
    back = wait_for("condition taints removed", lambda: (t := _taints(api, node)) and len(t) == 1 and t, 10)
    assert list(back) == ["team:NoSchedule"]


def test_pods_leave_a_lost_node_after_their_toleration_and_stay_terminating(
    api: KubeClient, kubelet: FakeKubelet, ns: str
) -> None:
    node = _node(kubelet, "evict-node")
    short = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]
    forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    api.create("pods", _pod("short", node, short), ns)
    api.create("pods", _pod("forever", node, forever), ns)
    for name in ("short", "forever"):
        wait_for(f"{name} running", lambda name=name: _running(api, ns, name))
    kubelet.paused.add(node)
    wait_for("node tainted", lambda: f"{UNREACHABLE}:NoExecute" in _taints(api, node), 15)
    tainted = time.monotonic()
    marked = wait_for(
        "short evicted",
        lambda: (p := api.get("pods", "short", ns))["metadata"].get("deletionTimestamp") and p,
        10,
    )
    assert 1.5 <= time.monotonic() - tainted < 5
    assert _condition(marked, "DisruptionTarget")["reason"] == "DeletionByTaintManager"
    time.sleep(2)  # nobody confirms the deletion: the pod stays, Terminating
    assert api.get_or_none("pods", "short", ns) is not None
    assert api.get("pods", "forever", ns)["metadata"].get("deletionTimestamp") is None

    # Declaring the node gone: the pod garbage collector force-deletes its terminating pods.
    taints = api.get("nodes", node)["spec"]["taints"]
    oos = {"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}
    api.patch("nodes", node, {"spec": {"taints": [*taints, oos]}})
    wait_for("short force-deleted", lambda: api.get_or_none("pods", "short", ns) is None, 10)
    # "forever" tolerated only the unreachable taint: out-of-service evicts it, and PodGC removes it.
    wait_for("forever force-deleted", lambda: api.get_or_none("pods", "forever", ns) is None, 10)
    kubelet.paused.discard(node)


def test_a_default_pod_gets_the_timing_profiles_tolerations(
    api: KubeClient, kubelet: FakeKubelet, ns: str
) -> None:
    node = _node(kubelet, "default-node")
    created = api.create("pods", _pod("plain", node), ns)
    tolerations = {t["key"]: t for t in created["spec"]["tolerations"]}
    for key in (UNREACHABLE, "node.kubernetes.io/not-ready"):
        assert tolerations[key]["tolerationSeconds"] == FAST.default_toleration_seconds
        assert tolerations[key]["effect"] == "NoExecute" and tolerations[key]["operator"] == "Exists"


def test_pods_of_a_deleted_node_are_force_deleted(api: KubeClient, kubelet: FakeKubelet, ns: str) -> None:
    node = _node(kubelet, "deleted-node")
    api.create("pods", _pod("orphan", node, []), ns)
    wait_for("orphan running", lambda: _running(api, ns, "orphan"))
    kubelet.paused.add(node)
    kubelet.nodes.discard(node)
    api.delete("nodes", node)
    gone = wait_for("orphan collected", lambda: api.get_or_none("pods", "orphan", ns) is None, 15)
    assert gone


@pytest.mark.parametrize("policy", ["out-of-service", "wait"])
def test_the_lab_operator_declares_a_lost_node_out_of_service_or_waits(
    api: KubeClient, kubelet: FakeKubelet, ns: str, policy: str
) -> None:
    node = _node(kubelet, f"operator-{policy}")
    api.create("pods", _pod("db", node, [], {"app": "mssql"}), ns)
    wait_for("db running", lambda: _running(api, ns, "db"))
    handler = NodeLossHandler(api, policy_from({"LAB_OPERATOR_NODE_LOSS": policy}))
    assert handler.handle() == []  # the node is fine
    kubelet.paused.add(node)
    try:
        wait_for("node tainted unreachable", lambda: f"{UNREACHABLE}:NoExecute" in _taints(api, node), 15)
        tainted = handler.handle()
        if policy == "wait":
            assert tainted == [] and f"{OUT_OF_SERVICE}:NoExecute" not in _taints(api, node)
        else:
            assert tainted == [node]
            assert _taints(api, node)[f"{OUT_OF_SERVICE}:NoExecute"]["value"] == "nodeshutdown"
            assert handler.handle() == []  # once is enough
            wait_for("db moved off the lost node", lambda: api.get_or_none("pods", "db", ns) is None, 10)
            # The node comes back: the operator takes its own taint off (a person's would stay).
            kubelet.paused.discard(node)
            ready = _condition(api.get("nodes", node), "Ready")
            wait_for(
                "node Ready again",
                lambda: _condition(api.get("nodes", node), "Ready")["status"] == "True",
                10,
            )
            assert ready["status"] != "True"
            handler.handle()
            assert f"{OUT_OF_SERVICE}:NoExecute" not in _taints(api, node)
            annotations = api.get("nodes", node)["metadata"].get("annotations") or {}
            assert "lab.mssql.example.com/out-of-service-by-operator" not in annotations
    finally:
        kubelet.paused.discard(node)
        kubelet.nodes.discard(node)
        api.delete("nodes", node)


def test_a_bad_node_loss_policy_is_one_line() -> None:
    with pytest.raises(LabError, match="LAB_OPERATOR_NODE_LOSS='later' is not a node-loss policy: use"):
        policy_from({"LAB_OPERATOR_NODE_LOSS": "later"})


def test_the_control_plane_says_its_timing_profile(api: KubeClient, tmp_path: Path) -> None:
    data = api.get("configmaps", CONFIGMAP, "kube-system")["data"]
    assert data["profile"] == "fast" and data["nodeMonitorGracePeriodSeconds"] == "4"
    assert data["defaultTolerationSeconds"] == "10"
    bad = subprocess.run(
        [sys.executable, "-m", "lab.controlplane", "--data", str(tmp_path), "--timing", "slow"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "lab controlplane: unknown lab timing profile 'slow': use kubernetes or fast"


def test_timing_profiles_follow_kubernetes_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (KUBERNETES.node_monitor_grace, KUBERNETES.default_toleration_seconds) == (40.0, 300)
    assert (KUBERNETES.backoff_base, KUBERNETES.backoff_max) == (10.0, 300.0)
    monkeypatch.delenv("HARNESS_LAB_TIMING", raising=False)
    assert requested(None, None) is KUBERNETES
    assert requested(None, "fast") is FAST
    assert requested("kubernetes", "fast") is KUBERNETES
    monkeypatch.setenv("HARNESS_LAB_TIMING", "fast")
    assert requested(None, "kubernetes") is FAST
    with pytest.raises(LabError, match="use kubernetes or fast"):
        profile("slow")


def test_the_first_matching_toleration_decides_as_in_kubernetes() -> None:
    unreachable = {"key": UNREACHABLE, "effect": "NoExecute"}
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    limited = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
    forever = {"operator": "Exists"}
    pod = {"spec": {"tolerations": [limited, forever]}}
    assert eviction_delay(pod, [unreachable]) == 30  # the first match is the limited one
    assert eviction_delay({"spec": {"tolerations": [forever, limited]}}, [unreachable]) is None
    assert eviction_delay(pod, [unreachable, not_ready]) == 30  # not-ready: "forever" matches
    assert eviction_delay({"spec": {"tolerations": [limited]}}, [unreachable, not_ready]) == 0
    negative = {**limited, "tolerationSeconds": -5}
    assert eviction_delay({"spec": {"tolerations": [negative]}}, [unreachable]) == 0
