"""The scheduler: binds pending pods to a Ready, schedulable node, least-loaded first.

A pod is considered when it has no ``spec.nodeName``, is not terminating or finished,
and names no scheduler other than ``default-scheduler``. A node fits when its Ready
condition is True, it is not cordoned (``spec.unschedulable``), its labels match the
pod's ``nodeSelector`` and required node affinity, and the pod tolerates its
NoSchedule/NoExecute taints. Among fitting nodes the one running the fewest pods wins
(ties: name order). Binding goes through the ``pods/binding`` subresource, so a pod is
never bound twice. A pod that fits nowhere gets ``PodScheduled=False`` with reason
``Unschedulable`` and a message like the real scheduler's, and is retried every pass.
Volumes do not pin pods: PVCs are folders every node reaches.

Events, as the default scheduler reports them (component ``default-scheduler``):
``Scheduled`` "Successfully assigned <ns>/<pod> to <node>" after each binding, and a
Warning ``FailedScheduling`` with the condition's message when a pod fits nowhere (once
per new message; the pass retries silently while the reason stays the same).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from lab.controllers.loop import (
    Obj,
    bind_pod,
    condition,
    format_time,
    is_active_pod,
    is_terminating,
    strategic_patch,
)
from lab.events import record
from lab.kubeclient import ApiError, KubeClient

__all__ = ["SchedulerController", "node_fits", "tolerates"]

log = logging.getLogger(__name__)

COMPONENT = "default-scheduler"


def _expression_matches(expr: Any, labels: dict[str, str]) -> bool:
    if not isinstance(expr, dict):
        return False
    key, op, values = expr.get("key", ""), expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _affinity_matches(pod: Obj, labels: dict[str, str]) -> bool:
    required = (
        pod.get("spec", {})
        .get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if not isinstance(required, dict):
        return True
    terms = [t for t in required.get("nodeSelectorTerms") or [] if isinstance(t, dict)]
    if not terms:
        return True
    return any(
        all(_expression_matches(e, labels) for e in term.get("matchExpressions") or []) for term in terms
    )


def tolerates(pod: Obj, taint: Obj) -> bool:
    """True when one of the pod's tolerations matches ``taint``."""
    for tol in pod.get("spec", {}).get("tolerations") or []:
        if not isinstance(tol, dict):
            continue
        if tol.get("effect") not in (None, "", taint.get("effect")):
            continue
        if tol.get("operator") == "Exists":
            if tol.get("key") in (None, "", taint.get("key")):
                return True
            continue
        if tol.get("key") == taint.get("key") and str(tol.get("value") or "") == str(
            taint.get("value") or ""
        ):
            return True
    return False


def node_fits(pod: Obj, node: Obj) -> str | None:
    """None when ``pod`` may run on ``node``, else the reason it may not (scheduler wording)."""
    ready = condition(node, "Ready")
    if not ready or ready.get("status") != "True":
        return "node(s) were not ready"
    if node.get("spec", {}).get("unschedulable"):
        return "node(s) were unschedulable"
    labels = node.get("metadata", {}).get("labels") or {}
    selector = pod.get("spec", {}).get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    if not _affinity_matches(pod, labels):
        return "node(s) didn't match Pod's node affinity/selector"
    for taint in node.get("spec", {}).get("taints") or []:
        if (
            isinstance(taint, dict)
            and taint.get("effect") in ("NoSchedule", "NoExecute")
            and not tolerates(pod, taint)
        ):
            return "node(s) had untolerated taint(s)"
    return None


def _wants_scheduling(pod: Obj) -> bool:
    spec = pod.get("spec", {})
    return (
        not spec.get("nodeName")
        and is_active_pod(pod)
        and spec.get("schedulerName", "default-scheduler") in ("", "default-scheduler")
    )


class SchedulerController:
    name = "scheduler"
    interval = 0.5
    watches: tuple[str, ...] = ("pods",)

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self.bound = 0

    def reconcile_once(self) -> None:
        pending = [p for p in self.client.list("pods", fields="spec.nodeName=") if _wants_scheduling(p)]
        if not pending:
            return
        nodes = sorted(self.client.list("nodes"), key=lambda n: n["metadata"]["name"])
        load = Counter(
            p["spec"]["nodeName"]
            for p in self.client.list("pods")
            if p.get("spec", {}).get("nodeName")
            and not is_terminating(p)
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        )
        pending.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        for pod in pending:
            reasons: Counter[str] = Counter()
            fitting = []
            for node in nodes:
                why = node_fits(pod, node)
                if why is None:
                    fitting.append(node["metadata"]["name"])
                else:
                    reasons[why] += 1
            if not fitting:
                self._unschedulable(pod, len(nodes), reasons)
                continue
            target = min(fitting, key=lambda n: (load[n], n))
            try:
                bind_pod(self.client, pod, target)
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise
                continue
            load[target] += 1
            self.bound += 1
            md = pod["metadata"]
            record(
                self.client,
                pod,
                "Scheduled",
                f"Successfully assigned {md['namespace']}/{md['name']} to {target}",
                component=COMPONENT,
                action="Binding",
            )
            log.info("bound %s/%s to %s", pod["metadata"]["namespace"], pod["metadata"]["name"], target)

    def _unschedulable(self, pod: Obj, total: int, reasons: Counter[str]) -> None:
        detail = ", ".join(f"{count} {why}" for why, count in sorted(reasons.items()))
        message = f"0/{total} nodes are available" + (f": {detail}." if detail else ".")
        current = condition(pod, "PodScheduled") or {}
        if current.get("status") == "False" and current.get("message") == message:
            return
        patch = {
            "status": {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastProbeTime": None,
                        "lastTransitionTime": format_time(self.clock()),
                    }
                ]
            }
        }
        md = pod["metadata"]
        try:
            strategic_patch(self.client, "pods", md["name"], patch, md["namespace"], sub="status")
        except ApiError as exc:
            if exc.code != 404:
                raise
            return
        record(
            self.client,
            pod,
            "FailedScheduling",
            message,
            type="Warning",
            component=COMPONENT,
            action="Scheduling",
        )
