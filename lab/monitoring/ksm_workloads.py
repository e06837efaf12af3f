"""Pods, Deployments, StatefulSets and Nodes as kube-state-metrics v2 series.

Pod series carry ``namespace``, ``pod`` and ``uid``; container series also
``container``; Deployments ``namespace`` and ``deployment``; StatefulSets
``namespace`` and ``statefulset``; Nodes ``node``.

* ``kube_pod_info``: ``host_ip``, ``pod_ip``, ``node``, ``created_by_kind``/
  ``created_by_name`` (the controller ownerReference), ``priority_class``, ``host_network``.
* ``kube_pod_status_phase{phase}``: five series (Pending, Succeeded, Failed, Unknown,
  Running), 1 on the pod's phase; none while the pod has no phase.
* ``kube_pod_status_ready{condition}`` and ``kube_node_status_condition{condition,status}``:
  three series per condition, ``true``/``false``/``unknown``, 1 on the matching one.
"""

from __future__ import annotations

from typing import Any

from lab.monitoring.exposition import Series, as_dict, as_list, bool_value, condition_series, number

__all__ = ["POD_PHASES", "deployment_series", "node_series", "pod_series", "statefulset_series"]

Obj = dict[str, Any]

POD_PHASES = ("Pending", "Succeeded", "Failed", "Unknown", "Running")


def pod_series(pod: Obj) -> list[Series]:
    """The series of one Pod."""
    md, spec, status = as_dict(pod.get("metadata")), as_dict(pod.get("spec")), as_dict(pod.get("status"))
    base = {
        "namespace": str(md.get("namespace") or ""),
        "pod": str(md.get("name") or ""),
        "uid": str(md.get("uid") or ""),
    }
    owner = next(
        (as_dict(r) for r in as_list(md.get("ownerReferences")) if as_dict(r).get("controller") is True), {}
    )
    info = {
        **base,
        "host_ip": str(status.get("hostIP") or ""),
        "pod_ip": str(status.get("podIP") or ""),
        "node": str(spec.get("nodeName") or ""),
        "created_by_kind": str(owner.get("kind") or ""),
        "created_by_name": str(owner.get("name") or ""),
        "priority_class": str(spec.get("priorityClassName") or ""),
        "host_network": "true" if spec.get("hostNetwork") is True else "false",
    }
    out = [Series("kube_pod_info", info, 1.0)]
    phase = status.get("phase")
    if phase:
        out.extend(
            Series("kube_pod_status_phase", {**base, "phase": p}, bool_value(phase == p)) for p in POD_PHASES
        )
    for cond in (as_dict(c) for c in as_list(status.get("conditions"))):
        if cond.get("type") == "Ready":
            out.extend(condition_series("kube_pod_status_ready", base, cond.get("status")))
    for cs in (as_dict(c) for c in as_list(status.get("containerStatuses"))):
        labels = {**base, "container": str(cs.get("name") or "")}
        out.append(Series("kube_pod_container_status_restarts_total", labels, number(cs.get("restartCount"))))
        out.append(Series("kube_pod_container_status_ready", dict(labels), bool_value(cs.get("ready"))))
    return out


def _replica_series(obj: Obj, kind: str, ready: tuple[str, str], desired: str) -> list[Series]:
    """``ready`` = (metric, status field) and the ``desired`` replicas metric of one workload."""
    md = as_dict(obj.get("metadata"))
    base = {"namespace": str(md.get("namespace") or ""), kind: str(md.get("name") or "")}
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    out = [Series(ready[0], dict(base), number(status.get(ready[1])))]
    if spec.get("replicas") is not None:
        out.append(Series(desired, dict(base), number(spec.get("replicas"))))
    return out


def deployment_series(deployment: Obj) -> list[Series]:
    """Desired and available replicas of one Deployment."""
    return _replica_series(
        deployment,
        "deployment",
        ("kube_deployment_status_replicas_available", "availableReplicas"),
        "kube_deployment_spec_replicas",
    )


def statefulset_series(statefulset: Obj) -> list[Series]:
    """Desired and ready replicas of one StatefulSet."""
    return _replica_series(
        statefulset,
        "statefulset",
        ("kube_statefulset_status_replicas_ready", "readyReplicas"),
        "kube_statefulset_replicas",
    )


def node_series(node: Obj) -> list[Series]:
    """Unschedulable flag and every condition of one Node."""
    md, spec = as_dict(node.get("metadata")), as_dict(node.get("spec"))
    base = {"node": str(md.get("name") or "")}
    out = [Series("kube_node_spec_unschedulable", dict(base), bool_value(spec.get("unschedulable")))]
    for cond in (as_dict(c) for c in as_list(as_dict(node.get("status")).get("conditions"))):
        labels = {**base, "condition": str(cond.get("type") or "")}
        out.extend(condition_series("kube_node_status_condition", labels, cond.get("status"), key="status"))
    return out
