"""ReplicaSets: keep ``spec.replicas`` active pods made from the template.

Pods belong to a set by their controller ownerReference (the set's uid). Missing pods
are created with ``generateName: <set>-`` (at most :data:`BURST` per pass); surplus
pods are deleted, least useful first (unscheduled, then not Ready, then newest).
Finished pods (Succeeded/Failed) are deleted so they are replaced. The status
(``replicas``, ``fullyLabeledReplicas``, ``readyReplicas``, ``availableReplicas``,
``observedGeneration``) is written after the pass's own creates and deletes, so
``observedGeneration == generation`` means the counts already reflect the current spec
(the Deployment controller waits for that before the next rolling step).

Events on the set, in Kubernetes' pod-control words (component ``replicaset-controller``):
``SuccessfulCreate`` "Created pod: <pod>", ``SuccessfulDelete`` "Deleted pod: <pod>", and
a Warning ``FailedCreate`` "Error creating: <why>".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lab.controllers.loop import (
    Obj,
    is_active_pod,
    is_pod_ready,
    is_terminating,
    new_pod,
    one_object,
    owned_by,
    pod_available,
)
from lab.events import record
from lab.kubeclient import ApiError, KubeClient

__all__ = ["BURST", "ReplicaSetController"]

log = logging.getLogger(__name__)

BURST = 50
COMPONENT = "replicaset-controller"


def _usefulness(pod: Obj) -> tuple[int, int]:
    return (1 if pod.get("spec", {}).get("nodeName") else 0), (1 if is_pod_ready(pod) else 0)


class ReplicaSetController:
    name = "replicaset"
    interval = 1.0
    watches: tuple[str, ...] = ("pods", "replicasets")

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def reconcile_once(self) -> None:
        sets = self.client.list("replicasets")
        if not sets:
            return
        pods = owned_by(self.client.list("pods"))
        for rs in sets:
            if is_terminating(rs):
                continue
            with one_object(self.name, rs, self.client):
                self._sync(rs, pods.get(rs["metadata"]["uid"], []))

    def _sync(self, rs: Obj, pods: list[Obj]) -> None:
        md, spec = rs["metadata"], rs.get("spec", {})
        ns, name = md["namespace"], md["name"]
        want = int(spec.get("replicas", 1))
        for pod in pods:
            if not is_terminating(pod) and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                self._delete_pod(rs, pod)
        active = [p for p in pods if is_active_pod(p)]
        missing = want - len(active)
        created = 0
        if missing > 0:
            for _ in range(min(missing, BURST)):
                extra = {}
                tpl_labels = (spec.get("template", {}).get("metadata") or {}).get("labels") or {}
                if "pod-template-hash" in (md.get("labels") or {}) and "pod-template-hash" not in tpl_labels:
                    extra["pod-template-hash"] = md["labels"]["pod-template-hash"]
                try:
                    made = self.client.create("pods", new_pod(spec.get("template", {}), rs, labels=extra), ns)
                except ApiError as exc:
                    record(
                        self.client,
                        rs,
                        "FailedCreate",
                        f"Error creating: {exc}",
                        type="Warning",
                        component=COMPONENT,
                    )
                    if exc.code in (403, 404, 409):  # namespace terminating or gone: nothing to do
                        log.info("replicaset %s/%s cannot create pods: %s", ns, name, exc)
                        break
                    raise
                created += 1
                record(
                    self.client,
                    rs,
                    "SuccessfulCreate",
                    f"Created pod: {made['metadata']['name']}",
                    component=COMPONENT,
                )
        elif missing < 0:
            # least useful first; among equals the newest (two stable sorts)
            ordered = sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
            ordered.sort(key=_usefulness)
            doomed = ordered[:-missing]
            for pod in doomed:
                self._delete_pod(rs, pod)
            gone = {p["metadata"]["uid"] for p in doomed}
            active = [p for p in active if p["metadata"]["uid"] not in gone]
        self._status(rs, active, created)

    def _delete_pod(self, rs: Obj, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        if self.client.delete("pods", name, rs["metadata"]["namespace"]) is not None:
            record(self.client, rs, "SuccessfulDelete", f"Deleted pod: {name}", component=COMPONENT)

    def _status(self, rs: Obj, active: list[Obj], created: int) -> None:
        md, spec = rs["metadata"], rs.get("spec", {})
        now = self.clock()
        min_ready = int(spec.get("minReadySeconds") or 0)
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        status = {
            "replicas": len(active) + created,
            "fullyLabeledReplicas": sum(
                1
                for p in active
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
            )
            + created,
            "readyReplicas": sum(1 for p in active if is_pod_ready(p)),
            "availableReplicas": sum(1 for p in active if pod_available(p, min_ready, now)),
            "observedGeneration": md.get("generation", 1),
        }
        current = rs.get("status") or {}
        if all(current.get(k, 0) == v for k, v in status.items()):
            return
        try:
            self.client.patch("replicasets", md["name"], {"status": status}, md["namespace"], sub="status")
        except ApiError as exc:
            if exc.code != 404:
                raise
