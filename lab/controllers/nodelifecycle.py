"""Node lifecycle: a node whose kubelet stopped heartbeating becomes NotReady and is tainted.

A heartbeat is a change of the node's Ready ``lastHeartbeatTime`` or of its Lease's
``renewTime`` in ``kube-node-lease``; like the real controller, the time of a
heartbeat is when this controller *saw* the change (its own clock, so client clock
skew and second-resolution timestamps do not matter). After ``timeout`` seconds
without one (Kubernetes' node-monitor-grace-period: 40 s, or the lab's timing profile,
:mod:`lab.timing`; noticed within one pass, every node-monitor-period: 5 s in
Kubernetes, 0.5 s under ``fast``), every node condition becomes
``Unknown`` with reason ``NodeStatusUnknown`` (the kubelet sets them back on its next
heartbeat), and the pods bound to a node that is not Ready get ``Ready=False`` like the
real controller's MarkPodsNotReady, so whoever follows pod readiness sees the outage.

Taints follow the Ready condition as Kubernetes' TaintNodesByCondition and taint-based
eviction set them: Ready ``Unknown`` gives ``node.kubernetes.io/unreachable`` and Ready
``False`` gives ``node.kubernetes.io/not-ready``, each with effects NoSchedule and
NoExecute (``timeAdded`` stamped); Ready ``True`` removes them. Other taints (a
person's, ``node.kubernetes.io/out-of-service``) are left alone. Moving pods away is
the NoExecute taint manager's job (:mod:`lab.controllers.taints`); a pod tolerates
these taints for the ``tolerationSeconds`` the API server gave it (300 s by default).
A node first seen counts as just heartbeating, so a control plane restart does not
declare every node dead before kubelets had a chance to report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from lab.controllers.loop import Obj, condition, format_time, is_terminating, strategic_patch
from lab.events import record
from lab.kubeclient import ApiError, KubeClient

__all__ = ["CONDITION_TAINTS", "HEARTBEAT_TIMEOUT", "NodeLifecycleController", "condition_taints"]

log = logging.getLogger(__name__)

#: Kubernetes' node-monitor-grace-period (the lab's ``fast`` timing profile uses 4 s).
HEARTBEAT_TIMEOUT = 40.0
LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
#: The taint keys this controller owns, by the Ready condition's status.
CONDITION_TAINTS = {"Unknown": UNREACHABLE, "False": NOT_READY}


def condition_taints(node: Obj, now: float) -> list[Obj] | None:
    """The node's taints as its Ready condition wants them; None when they already are.

    Taints this controller does not own are kept as they are, in place; its own keep
    their ``timeAdded`` while they stay.
    """
    ready = condition(node, "Ready")
    # A node that never reported has no taint yet: it is declared Unknown after the grace period.
    status = "" if ready is None else str(ready.get("status"))
    want = CONDITION_TAINTS.get(status)
    taints = [t for t in node.get("spec", {}).get("taints") or [] if isinstance(t, dict)]
    kept = [t for t in taints if t.get("key") not in CONDITION_TAINTS.values() or t.get("key") == want]
    if want is not None:
        for effect in ("NoSchedule", "NoExecute"):
            if not any(t.get("key") == want and t.get("effect") == effect for t in kept):
                taint: Obj = {"key": want, "effect": effect}
                if effect == "NoExecute":
                    taint["timeAdded"] = format_time(now)
                kept.append(taint)
    return None if kept == taints else kept


class NodeLifecycleController:
    name = "nodelifecycle"
    interval = 0.5
    watches: tuple[str, ...] = ()

    def __init__(
        self,
        client: KubeClient,
        clock: Callable[[], float] = time.time,
        timeout: float = HEARTBEAT_TIMEOUT,
        interval: float = 0.5,
    ) -> None:
        """``interval``: how often node health is checked (node-monitor-period: 5 s in Kubernetes)."""
        self.client = client
        self.clock = clock  # wall time, for the timestamps written
        self.monotonic = time.monotonic  # heartbeat gaps
        self.timeout = timeout
        self.interval = interval
        self._seen: dict[str, tuple[tuple[Any, Any], float]] = {}

    def _leases(self) -> dict[str, Any]:
        renewed: dict[str, Any] = {}
        try:
            leases = self.client.list("leases", namespace=LEASE_NAMESPACE)
        except ApiError as exc:
            if exc.code in (403, 404):
                return renewed
            raise
        for lease in leases:
            renewed[lease["metadata"]["name"]] = lease.get("spec", {}).get("renewTime")
        return renewed

    def reconcile_once(self) -> None:
        now = self.clock()
        leases = self._leases()
        not_ready: set[str] = set()
        nodes = self.client.list("nodes")
        for gone in set(self._seen) - {n["metadata"]["name"] for n in nodes}:
            del self._seen[gone]
        for node in nodes:
            name = node["metadata"]["name"]
            ready = condition(node, "Ready")
            beat = ((ready or {}).get("lastHeartbeatTime"), leases.get(name))
            previous = self._seen.get(name)
            if previous is None or previous[0] != beat:
                self._seen[name] = (beat, self.monotonic())
            last = self._seen[name][1]
            if self.monotonic() - last > self.timeout and (ready is None or ready.get("status") != "Unknown"):
                self._mark_unknown(node, now)
                not_ready.add(name)
            elif ready is None or ready.get("status") != "True":
                not_ready.add(name)
            self._taint(node, now)
        if not_ready:
            self._mark_pods(not_ready, now)

    def _taint(self, node: Obj, now: float) -> None:
        """Bring the node's condition taints in line with its Ready condition as listed.

        A condition this pass just changed is seen by the next pass (0.5 s later).
        """
        name = node["metadata"]["name"]
        taints = condition_taints(node, now)
        if taints is None:
            return
        version = node["metadata"]["resourceVersion"]
        patch = {"metadata": {"resourceVersion": version}, "spec": {"taints": taints}}
        try:
            self.client.patch("nodes", name, patch)
        except ApiError as exc:
            if exc.code in (404, 409):  # gone, or changed meanwhile: look again next pass
                return
            raise
        keys = sorted({t["key"] for t in taints if t.get("key") in CONDITION_TAINTS.values()})
        log.info("node %s taints: %s", name, ", ".join(keys) or "none of the condition taints")

    def _mark_unknown(self, node: Obj, now: float) -> None:
        stamp = format_time(now)
        conditions = [c for c in node.get("status", {}).get("conditions") or [] if isinstance(c, dict)]
        if not any(c.get("type") == "Ready" for c in conditions):
            conditions.append({"type": "Ready"})
        changed = []
        for cond in conditions:
            if cond.get("status") == "Unknown":
                continue
            changed.append(
                {
                    **cond,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": stamp,
                }
            )
        patch = {
            "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
            "status": {"conditions": changed},
        }
        try:
            strategic_patch(self.client, "nodes", node["metadata"]["name"], patch, sub="status")
        except ApiError as exc:
            if exc.code in (404, 409):  # gone, or the kubelet just reported: look again next pass
                return
            raise
        log.warning("node %s is NotReady: no heartbeat for %.1f s", node["metadata"]["name"], self.timeout)
        record(
            self.client,
            {**node, "kind": "Node", "apiVersion": "v1"},
            "NodeNotReady",
            f"Node {node['metadata']['name']} status is now: NodeNotReady",
            component="node-controller",
        )

    def _mark_pods(self, nodes: set[str], now: float) -> None:
        for node in sorted(nodes):
            for pod in self.client.list("pods", fields=f"spec.nodeName={node}"):
                ready = condition(pod, "Ready")
                if is_terminating(pod) or not ready or ready.get("status") != "True":
                    continue
                patch = {
                    "status": {
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "False",
                                "reason": "NodeNotReady",
                                "message": f"node {node} is not ready",
                                "lastProbeTime": None,
                                "lastTransitionTime": format_time(now),
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
                    continue
                record(
                    self.client,
                    pod,
                    "NodeNotReady",
                    "Node is not ready",
                    type="Warning",
                    component="node-controller",
                )
