"""Taint-based eviction: pods leave a node whose NoExecute taints they do not tolerate.

Kubernetes' taint eviction controller (the NoExecute taint manager), for the pods bound
to a node with NoExecute taints:

- a taint the pod does not tolerate: the pod is deleted at once;
- every taint tolerated, some only for ``tolerationSeconds``: the pod is deleted when
  the shortest of those has passed since this controller first saw it so (a restart of
  the controller starts the count again, as the real one does);
- every taint tolerated for ever: the pod stays.

Which toleration counts for a taint is the first that matches it (:func:`eviction_delay`).

Deletion is an ordinary graceful DELETE after a ``DisruptionTarget`` condition with
reason ``DeletionByTaintManager``. On a node whose kubelet is gone nobody confirms it, so
the pod stays ``Terminating``, as in Kubernetes: a StatefulSet does not replace it until
the pod is really gone (the node deleted, the ``node.kubernetes.io/out-of-service``
taint put on it so the pod garbage collector force-deletes it,
:mod:`lab.controllers.podgc`, or a person's ``kubectl delete --force``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lab.controllers.loop import Obj, disrupt_pod, is_terminating, one_object
from lab.controllers.scheduler import tolerates
from lab.events import record
from lab.kubeclient import KubeClient

__all__ = ["TaintEvictionController", "eviction_delay", "no_execute_taints"]

log = logging.getLogger(__name__)


def no_execute_taints(node: Obj) -> list[Obj]:
    """The node's NoExecute taints."""
    taints = node.get("spec", {}).get("taints") or []
    return [t for t in taints if isinstance(t, dict) and t.get("effect") == "NoExecute"]


def _seconds(toleration: Obj) -> float | None:
    value = toleration.get("tolerationSeconds")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0.0, float(value))


def _matching(pod: Obj, taint: Obj) -> list[Obj]:
    tolerations = pod.get("spec", {}).get("tolerations") or []
    return [
        t for t in tolerations if isinstance(t, dict) and tolerates({"spec": {"tolerations": [t]}}, taint)
    ]


def eviction_delay(pod: Obj, taints: list[Obj]) -> float | None:
    """Seconds ``pod`` may stay under ``taints``: 0 for an untolerated one, None for ever.

    As Kubernetes' getMinTolerationTime over GetMatchingTolerations: for each taint the
    first toleration that matches it is the one used; the pod stays for ever only when
    none of the used tolerations has ``tolerationSeconds``, else for the shortest of them.
    """
    used: list[Obj] = []
    for taint in taints:
        matching = _matching(pod, taint)
        if not matching:
            return 0.0
        used.append(matching[0])
    limits = [limit for limit in (_seconds(t) for t in used) if limit is not None]
    return min(limits) if limits else None


class TaintEvictionController:
    name = "taint-eviction"
    interval = 0.5
    watches: tuple[str, ...] = ("nodes",)

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self._since: dict[str, float] = {}

    def reconcile_once(self) -> None:
        now = self.clock()
        watched: set[str] = set()
        for node in self.client.list("nodes"):
            taints = no_execute_taints(node)
            if not taints:
                continue
            name = node["metadata"]["name"]
            for pod in self.client.list("pods", fields=f"spec.nodeName={name}"):
                if is_terminating(pod):
                    continue
                with one_object(self.name, pod, self.client):
                    delay = eviction_delay(pod, taints)
                    if delay is None:
                        continue
                    uid = pod["metadata"]["uid"]
                    watched.add(uid)
                    since = self._since.setdefault(uid, now)
                    if now - since >= delay:
                        self._evict(pod, name)
        for uid in set(self._since) - watched:
            del self._since[uid]

    def _evict(self, pod: Obj, node: str) -> None:
        md = pod["metadata"]
        reason, message = "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"
        if not disrupt_pod(self.client, pod, reason, message):
            return
        log.warning("evicted pod %s/%s from node %s: NoExecute taint", md["namespace"], md["name"], node)
        record(
            self.client,
            pod,
            "TaintManagerEviction",
            f"Marking for deletion Pod {md['namespace']}/{md['name']}",
            component="taint-eviction-controller",
        )
