"""What the lab operator does when a node under one of its instances is lost: a knob.

With Kubernetes' timing a StatefulSet pod on a node that stopped for good is never
replaced by Kubernetes alone: the node goes NotReady, its NoExecute taint evicts the
pod after the toleration (300 s), the pod stays ``Terminating`` because no kubelet
confirms it, and the StatefulSet waits for it to be gone. Someone has to declare the
node gone: Kubernetes' non-graceful node shutdown is the ``node.kubernetes.io/out-of-service``
taint, after which the pod garbage collector force-deletes the node's terminating pods
(:mod:`lab.controllers.podgc`) and the pod starts elsewhere.

``LAB_OPERATOR_NODE_LOSS`` (in the operator Deployment's environment, lab/crds/operator.yaml)
picks what the lab operator does, so the harness's node-loss experiment can be tested
against both outcomes:

- ``out-of-service`` (the default): when a node hosting an instance's pod has been
  declared unreachable or not ready by the node lifecycle controller (its
  ``node.kubernetes.io/unreachable`` or ``not-ready`` NoExecute taint, so after the
  node-monitor grace period), the operator puts ``node.kubernetes.io/out-of-service=
  nodeshutdown:NoExecute`` on it, and marks the node with the annotation
  :data:`TAINTED_BY` so it knows the taint is its own. Kubernetes' documentation asks
  whoever brings the node back to remove the taint; the operator does so itself for its
  own taint once the node is Ready again (a taint someone else put there stays).
- ``wait``: the operator does nothing and waits for the node, as many operators do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from lab.controllers.loop import condition, format_time, is_node_ready
from lab.controllers.nodelifecycle import CONDITION_TAINTS
from lab.controllers.podgc import OUT_OF_SERVICE, out_of_service
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient

__all__ = ["ENV", "POLICIES", "TAINTED_BY", "NodeLossHandler", "policy_from"]

log = logging.getLogger("lab.operator")

ENV = "LAB_OPERATOR_NODE_LOSS"
#: The annotation that marks an out-of-service taint as the lab operator's.
TAINTED_BY = "lab.mssql.example.com/out-of-service-by-operator"
POLICIES = ("out-of-service", "wait")


def policy_from(environ: Mapping[str, str]) -> str:
    """The policy the environment names (default ``out-of-service``); LabError for another word."""
    value = (environ.get(ENV) or POLICIES[0]).strip().lower()
    if value not in POLICIES:
        raise LabError(f"{ENV}={value!r} is not a node-loss policy: use {' or '.join(POLICIES)}")
    return value


def _declared_lost(node: dict[str, Any]) -> bool:
    ready = condition(node, "Ready")
    if ready is not None and ready.get("status") == "True":
        return False
    taints = node.get("spec", {}).get("taints") or []
    return any(
        isinstance(t, dict) and t.get("key") in CONDITION_TAINTS.values() and t.get("effect") == "NoExecute"
        for t in taints
    )


def _own_taint(node: dict[str, Any]) -> bool:
    annotations = node.get("metadata", {}).get("annotations") or {}
    return annotations.get(TAINTED_BY) == "true"


class NodeLossHandler:
    """One pass per operator pass: taint the lost nodes under the instances' pods (or not)."""

    def __init__(self, client: KubeClient, policy: str, pod_labels: str = "app=mssql") -> None:
        self.client = client
        self.policy = policy
        self.pod_labels = pod_labels
        self._refused = False

    def handle(self) -> list[str]:
        """Nodes tainted out-of-service by this pass (its own taints on nodes Ready again go)."""
        try:
            nodes = self.client.list("nodes")
            for node in nodes:
                if _own_taint(node) and is_node_ready(node):
                    self._untaint(node)
            if self.policy == "wait":
                return []
            hosts = {
                pod["spec"]["nodeName"]
                for pod in self.client.list("pods", labels=self.pod_labels)
                if pod.get("spec", {}).get("nodeName")
            }
            tainted = []
            for node in nodes:
                name = node["metadata"]["name"]
                lost = name in hosts and _declared_lost(node) and not out_of_service(node)
                if lost and self._taint(node):
                    tainted.append(name)
            return tainted
        except ApiError as exc:
            if exc.code != 403:
                raise
            if not self._refused:
                log.error("cannot handle lost nodes: %s", exc)
                self._refused = True
            return []

    def _taint(self, node: dict[str, Any]) -> bool:
        name = node["metadata"]["name"]
        taints = [t for t in node.get("spec", {}).get("taints") or [] if isinstance(t, dict)]
        taint = {"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}
        taint["timeAdded"] = format_time(time.time())
        patch = {
            "metadata": {
                "resourceVersion": node["metadata"]["resourceVersion"],
                "annotations": {TAINTED_BY: "true"},
            },
            "spec": {"taints": [*taints, taint]},
        }
        try:
            self.client.patch("nodes", name, patch)
        except ApiError as exc:
            if exc.code in (404, 409):  # gone or changed: the next pass looks again
                return False
            raise
        log.warning(
            "node %s under an instance is lost: tainted %s=nodeshutdown:NoExecute (non-graceful shutdown)",
            name,
            OUT_OF_SERVICE,
        )
        return True

    def _untaint(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        taints = [t for t in node.get("spec", {}).get("taints") or [] if isinstance(t, dict)]
        patch = {
            "metadata": {
                "resourceVersion": node["metadata"]["resourceVersion"],
                "annotations": {TAINTED_BY: None},
            },
            "spec": {"taints": [t for t in taints if t.get("key") != OUT_OF_SERVICE]},
        }
        try:
            self.client.patch("nodes", name, patch)
        except ApiError as exc:
            if exc.code in (404, 409):
                return
            raise
        log.warning(
            "node %s is Ready again: removed the %s taint this operator put there", name, OUT_OF_SERVICE
        )
