"""Node lifecycle: a node whose kubelet stopped heartbeating becomes NotReady (Ready=Unknown).

A heartbeat is a change of the node's Ready ``lastHeartbeatTime`` or of its Lease's
``renewTime`` in ``kube-node-lease``; like the real controller, the time of a
heartbeat is when this controller *saw* the change (its own clock, so client clock
skew and second-resolution timestamps do not matter). After
:data:`HEARTBEAT_TIMEOUT` seconds without one (noticed within one 0.5 s pass),
every node condition becomes ``Unknown`` with reason
``NodeStatusUnknown`` (the kubelet sets them back on its next heartbeat), and the
pods bound to a node that is not Ready get ``Ready=False`` like the real
controller's MarkPodsNotReady, so whoever follows pod readiness sees the outage.
Pods are never evicted (the lab keeps them on their node until it comes back).
A node first seen counts as just heartbeating, so a control plane restart does not
declare every node dead before kubelets had a chance to report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from lab.controllers.loop import Obj, condition, format_time, is_terminating, strategic_patch
from lab.kubeclient import ApiError, KubeClient

__all__ = ["HEARTBEAT_TIMEOUT", "NodeLifecycleController"]

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = 4.0
LEASE_NAMESPACE = "kube-node-lease"


class NodeLifecycleController:
    name = "nodelifecycle"
    interval = 0.5
    watches: tuple[str, ...] = ()

    def __init__(
        self, client: KubeClient, clock: Callable[[], float] = time.time, timeout: float = HEARTBEAT_TIMEOUT
    ) -> None:
        self.client = client
        self.clock = clock
        self.timeout = timeout
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
                self._seen[name] = (beat, now)
            last = self._seen[name][1]
            if now - last > self.timeout and (ready is None or ready.get("status") != "Unknown"):
                self._mark_unknown(node, now)
                not_ready.add(name)
            elif ready is None or ready.get("status") != "True":
                not_ready.add(name)
        if not_ready:
            self._mark_pods(not_ready, now)

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
