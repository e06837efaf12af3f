"""Pod garbage collection: force-delete the pods no kubelet will ever confirm.

Like Kubernetes' pod GC controller, it force-deletes (grace period 0):

- pods bound to a node that no longer exists (after the node has been missing for
  ``quarantine`` seconds, so a node being re-registered is not raced);
- terminating pods on a node that is not Ready and carries the
  ``node.kubernetes.io/out-of-service`` taint (non-graceful node shutdown: a person or
  an operator declares the node gone, and its pods' volumes may be used elsewhere).

Each gets a ``DisruptionTarget`` condition with reason ``DeletionByPodGC`` first. Terminated
pods are not collected (the lab never has thousands).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lab.controllers.loop import Obj, disrupt_pod, is_node_ready, is_terminating, one_object
from lab.kubeclient import KubeClient

__all__ = ["OUT_OF_SERVICE", "PodGCController", "out_of_service"]

log = logging.getLogger(__name__)

#: The taint that declares a node shut down for good (non-graceful node shutdown).
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def out_of_service(node: Obj) -> bool:
    """The node carries the out-of-service taint (any value, NoExecute or NoSchedule)."""
    taints = node.get("spec", {}).get("taints") or []
    return any(isinstance(t, dict) and t.get("key") == OUT_OF_SERVICE for t in taints)


class PodGCController:
    """Periodic, as Kubernetes' is (every 20 s, a deleted node's pods after 40 s by default)."""

    name = "podgc"
    interval = 20.0
    watches: tuple[str, ...] = ()

    def __init__(
        self,
        client: KubeClient,
        clock: Callable[[], float] = time.monotonic,
        quarantine: float = 40.0,
        interval: float = 20.0,
    ) -> None:
        self.client = client
        self.clock = clock
        self.quarantine = quarantine
        self.interval = interval
        self._missing: dict[str, float] = {}

    def reconcile_once(self) -> None:
        now = self.clock()
        nodes = {n["metadata"]["name"]: n for n in self.client.list("nodes")}
        missing_now: set[str] = set()
        for pod in self.client.list("pods"):
            name = pod.get("spec", {}).get("nodeName")
            if not name:
                continue
            with one_object(self.name, pod, self.client):
                node = nodes.get(name)
                if node is None:
                    missing_now.add(name)
                    if now - self._missing.setdefault(name, now) >= self.quarantine:
                        self._force_delete(pod, f"node {name} no longer exists")
                elif is_terminating(pod) and out_of_service(node) and not is_node_ready(node):
                    self._force_delete(pod, f"node {name} is out of service")
        for gone in set(self._missing) - missing_now:
            del self._missing[gone]

    def _force_delete(self, pod: Obj, why: str) -> None:
        md = pod["metadata"]
        message = "PodGC: node no longer exists" if "exists" in why else "PodGC: node is out of service"
        if not disrupt_pod(self.client, pod, "DeletionByPodGC", message, grace=0):
            return
        log.warning("force-deleted pod %s/%s: %s", md["namespace"], md["name"], why)
