"""How a lost node's pods were moved, in words: ``probes.k8s.node_watch.explain``, and the
analysis that puts that sentence into the violation of a tenant that did not recover."""

from __future__ import annotations

from loadgen.journal import Write
from probes.analysis import analyze
from probes.k8s.node_watch import OUT_OF_SERVICE, explain
from probes.model import Fault, Objective


def _record(**extra: object) -> dict:
    base = {
        "node": "lab-node-2",
        "not_ready_after": 40.4,
        "ready_again_after": None,
        "node_deleted_after": None,
        "taints": {"node.kubernetes.io/unreachable:NoExecute": 40.9},
        "pods": [],
    }
    return {**base, **extra}


def test_nobody_declared_the_node_gone() -> None:
    pod = {"name": "tenant-0-0", "namespace": "tenants", "marked_for_deletion_after": 341.0, "how": "stayed"}
    handling, text = explain(_record(pods=[pod]))
    assert handling == "none"
    assert text.startswith("node lab-node-2 was lost; NotReady after 40.4 s")
    assert "pod tenants/tenant-0-0 marked for deletion after 341.0 s and still Terminating" in text
    assert f"nobody applied {OUT_OF_SERVICE}, force-deleted the pods or deleted the Node" in text


def test_the_out_of_service_taint_and_pod_gc() -> None:
    taints = {"node.kubernetes.io/unreachable:NoExecute": 40.9, f"{OUT_OF_SERVICE}:NoExecute": 41.3}
    pod = {"name": "tenant-0-0", "namespace": "tenants", "gone_after": 41.8, "how": "pod-gc"}
    handling, text = explain(_record(taints=taints, pods=[pod]))
    assert handling == "out-of-service"
    assert f"tainted {OUT_OF_SERVICE} after 41.3 s" in text
    assert "pod tenants/tenant-0-0 force-deleted by the pod garbage collector after 41.8 s" in text
    assert "nobody" not in text


def test_a_force_deletion_and_a_node_that_came_back() -> None:
    forced = {"name": "a", "namespace": "t", "gone_after": 50.0, "how": "force-deleted"}
    assert explain(_record(pods=[forced]))[0] == "force-deletion"
    back = {"name": "a", "namespace": "t", "gone_after": 90.0, "how": "kubelet"}
    handling, text = explain(_record(pods=[back], ready_again_after=88.0))
    assert (
        handling == "node-returned" and "removed by its kubelet once the node was back after 90.0 s" in text
    )
    assert explain(_record(node_deleted_after=60.0))[0] == "node-deleted"
    assert "never seen NotReady" in explain(_record(not_ready_after=None))[1]


def test_the_explanation_joins_the_violation_of_a_tenant_that_did_not_recover() -> None:
    writes = [Write("tenant-0", 1, i, 100.0 + i * 0.1, 100.005 + i * 0.1, 0.005, "ok") for i in range(50)]
    writes += [Write("tenant-0", 1, 50 + i, 106.0 + i, 106.5 + i, 0.5, "fail") for i in range(10)]
    why = "node lab-node-2 was lost; nobody applied it"
    fault = Fault("lose lab-node-2", "node-loss", 105.5, "tenant-0", 105.6, {"explanation": why})
    result = analyze("run", writes, [], [fault], {}, ["tenant-0"], Objective(rto_seconds=60))
    lines = [v for v in result.violations if v.startswith("lose lab-node-2 tenant-0: not recovered")]
    assert lines and lines[0].endswith("; " + why), result.violations


def test_the_tenants_database_pod_is_chosen_over_its_job_pods() -> None:
    """An instance's label is on its backup and restore Jobs' pods too: a fault aimed at the
    tenant must hit the StatefulSet's running pod, whatever order the API lists them in."""
    from kubernetes.client import V1ObjectMeta, V1OwnerReference, V1Pod, V1PodStatus

    from probes.k8s.kube import database_pods

    def pod(name: str, owner: str, phase: str, deleting: bool = False) -> V1Pod:
        ref = V1OwnerReference(api_version="v1", kind=owner, name="o", uid="u")
        stamp = "2026-11-30T00:00:00Z" if deleting else None
        meta = V1ObjectMeta(name=name, owner_references=[ref], deletion_timestamp=stamp)
        return V1Pod(metadata=meta, status=V1PodStatus(phase=phase))

    pods = [
        pod("tenant-0-full-1-backup-x", "Job", "Succeeded"),
        pod("tenant-0-verify-2-restore-y", "Job", "Running"),
        pod("tenant-0-0", "StatefulSet", "Running", deleting=True),
        pod("tenant-0-1", "ReplicaSet", "Running"),
        pod("tenant-0-0b", "StatefulSet", "Pending"),
        pod("tenant-0-0a", "StatefulSet", "Running"),
    ]
    assert [p.metadata.name for p in database_pods(pods)] == ["tenant-0-0a", "tenant-0-0b", "tenant-0-1"]
    assert database_pods(pods[:2]) == []
