"""Watching a lost node: when Kubernetes declared it lost, and who moved its pods.

A StatefulSet pod on a node that stopped for good is replaced only once the pod object
is gone, and with a dead kubelet nobody confirms its deletion. Something must declare
the node gone: the ``node.kubernetes.io/out-of-service`` taint (after which the pod
garbage collector force-deletes the node's terminating pods), a force deletion
(``kubectl delete pod --force``, or an operator doing it), or deleting the Node.
:class:`NodeWatch` polls the node and the pods that ran on it every half second from the
moment the node was lost, and :meth:`NodeWatch.record` says what happened and when:

- ``not_ready_after``: seconds from the loss until the node's Ready condition left True;
- ``taints``: each taint that appeared, with seconds after the loss when it was first
  seen;
- per pod: when it was marked for deletion (and the ``DisruptionTarget`` reason), when it
  was gone, and how: ``pod-gc`` (force-deleted by the pod garbage collector, after the
  out-of-service taint or the Node's deletion), ``force-deleted`` (gone while the node was
  down, by a client), ``kubelet`` (gone after the node came back), or ``stayed``;
- ``handling``: ``out-of-service``, ``force-deletion``, ``node-deleted``, ``node-returned``
  or ``none``, and ``explanation``, one sentence for the report.

Times come from the harness's clock (UTC epoch; Kubernetes' own condition and taint
times have a resolution of a second); a half-second poll bounds how late anything is
seen. When the API could not be read, the record says how often (``poll_errors``) and
an outcome it could not see is "cannot tell".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from probes.k8s import kube

__all__ = ["OUT_OF_SERVICE", "NodeWatch", "explain"]

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
POLL_SECONDS = 0.5


@dataclass
class _Pod:
    name: str
    namespace: str
    marked_at: float | None = None
    reason: str | None = None
    gone_at: float | None = None
    how: str | None = None


@dataclass
class _Seen:
    not_ready_at: float | None = None
    ready_again_at: float | None = None
    node_deleted_at: float | None = None
    taints: dict[str, float] = field(default_factory=dict)
    pods: dict[str, _Pod] = field(default_factory=dict)


def _attr(obj: Any, *names: str) -> Any:
    for name in names:
        obj = getattr(obj, name, None) if obj is not None else None
    return obj


def _condition(obj: Any, kind: str) -> Any:
    for cond in _attr(obj, "status", "conditions") or []:
        if cond.type == kind:
            return cond
    return None


class NodeWatch(threading.Thread):
    """Poll ``node`` and the pods of ``namespaces`` that ran on it, from ``lost_at`` on."""

    def __init__(
        self,
        node: str,
        namespaces: list[str],
        lost_at: float,
        secrets: Mapping[str, Any] | None = None,
        poll: float = POLL_SECONDS,
    ) -> None:
        super().__init__(name=f"node-watch-{node}", daemon=True)
        self.node = node
        self.namespaces = namespaces
        self.lost_at = lost_at
        self.secrets = secrets
        self.poll = poll
        self.seen = _Seen()
        self.errors = 0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._pods_before()

    def _pods_before(self) -> None:
        for namespace in self.namespaces:
            try:
                pods = kube.core(self.secrets).list_namespaced_pod(
                    namespace, field_selector=f"spec.nodeName={self.node}"
                )
            except Exception:
                self.errors += 1  # the record says the API could not be read
                continue
            for pod in pods.items:
                self.seen.pods[pod.metadata.uid] = _Pod(pod.metadata.name, namespace)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.poll_once(time.time())
            except Exception:
                self.errors += 1  # an unreachable API for a moment: the next poll looks again
            self._stop_event.wait(self.poll)

    def stop(self) -> dict[str, Any]:
        """Stop polling (after one last look) and return :meth:`record`."""
        self._stop_event.set()
        if self.is_alive():
            self.join(5.0)
        with contextlib.suppress(Exception):
            self.poll_once(time.time())
        return self.record()

    def poll_once(self, now: float) -> None:
        core = kube.core(self.secrets)
        node = None
        try:
            node = core.read_node(self.node)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                raise
        with self._lock:
            seen = self.seen
            ready = _condition(node, "Ready")
            node_ready = ready is not None and ready.status == "True"
            if node is None and seen.node_deleted_at is None:
                seen.node_deleted_at = now
            if not node_ready and node is not None and seen.not_ready_at is None:
                # the harness's clock: the condition's own time has a resolution of a second
                seen.not_ready_at = now
            if node_ready and seen.not_ready_at is not None and seen.ready_again_at is None:
                seen.ready_again_at = now
            for taint in _attr(node, "spec", "taints") or []:
                key = f"{taint.key}:{taint.effect}"
                if key not in seen.taints:
                    seen.taints[key] = now  # first seen (``timeAdded`` has a resolution of a second)
            out_of_service = any(k.startswith(OUT_OF_SERVICE + ":") for k in seen.taints)
            self._poll_pods(core, now, node_ready, node is None, out_of_service)

    def _poll_pods(self, core: Any, now: float, node_ready: bool, node_gone: bool, oos: bool) -> None:
        for namespace in self.namespaces:
            present = {p.metadata.uid: p for p in core.list_namespaced_pod(namespace).items}
            for uid, pod in self.seen.pods.items():
                if pod.namespace != namespace or pod.gone_at is not None:
                    continue
                current = present.get(uid)
                if current is None:
                    pod.gone_at = now
                    if node_ready:
                        pod.how = "kubelet"
                    elif pod.reason == "DeletionByPodGC" or oos or node_gone:
                        pod.how = "pod-gc"
                    else:
                        pod.how = "force-deleted"
                    continue
                if current.metadata.deletion_timestamp is not None and pod.marked_at is None:
                    pod.marked_at = now
                target = _condition(current, "DisruptionTarget")
                if target is not None and target.reason:
                    pod.reason = str(target.reason)

    def record(self) -> dict[str, Any]:
        """What was seen, in seconds after the loss; see the module docstring."""
        with self._lock:
            seen = self.seen

            def after(at: float | None) -> float | None:
                return None if at is None else round(at - self.lost_at, 3)

            pods = [
                {
                    "name": p.name,
                    "namespace": p.namespace,
                    "marked_for_deletion_after": after(p.marked_at),
                    "disruption_reason": p.reason,
                    "gone_after": after(p.gone_at),
                    "how": p.how or "stayed",
                }
                for p in sorted(seen.pods.values(), key=lambda p: (p.namespace, p.name))
            ]
            out = {
                "node": self.node,
                "lost_at": self.lost_at,
                "not_ready_after": after(seen.not_ready_at),
                "ready_again_after": after(seen.ready_again_at),
                "node_deleted_after": after(seen.node_deleted_at),
                "taints": {k: after(v) for k, v in sorted(seen.taints.items(), key=lambda kv: kv[1])},
                "pods": pods,
                "poll_seconds": self.poll,
                "poll_errors": self.errors,
            }
        out["handling"], out["explanation"] = explain(out)
        return out


def explain(record: Mapping[str, Any]) -> tuple[str, str]:
    """How the lost node's pods were moved (if they were), as a word and a sentence."""
    node = record.get("node")
    taints = record.get("taints") or {}
    oos = next((v for k, v in taints.items() if k.startswith(OUT_OF_SERVICE + ":")), None)
    pods = [p for p in record.get("pods") or [] if isinstance(p, dict)]
    hows = {p.get("how") for p in pods}
    not_ready = record.get("not_ready_after")
    parts = [f"node {node} was lost"]
    parts.append(
        f"NotReady after {not_ready:.1f} s" if isinstance(not_ready, int | float) else "never seen NotReady"
    )
    if oos is not None:
        handling = "out-of-service"
        parts.append(f"tainted {OUT_OF_SERVICE} after {oos:.1f} s")
    elif record.get("node_deleted_after") is not None:
        handling = "node-deleted"
        parts.append(f"the Node object was deleted after {record['node_deleted_after']:.1f} s")
    elif "force-deleted" in hows:
        handling = "force-deletion"
    elif "kubelet" in hows or record.get("ready_again_after") is not None:
        handling = "node-returned"
    elif record.get("poll_errors") and not_ready is None:
        handling = "cannot-tell"
        parts.append(f"the API could not be read {record['poll_errors']} time(s): cannot tell what happened")
    else:
        handling = "none"
    for pod in pods:
        name = f"{pod.get('namespace')}/{pod.get('name')}"
        gone, how = pod.get("gone_after"), pod.get("how")
        if how == "stayed":
            marked = pod.get("marked_for_deletion_after")
            state = (
                f"marked for deletion after {marked:.1f} s and still Terminating"
                if isinstance(marked, int | float)
                else "still bound to it"
            )
            parts.append(f"pod {name} {state}")
        else:
            by = {
                "pod-gc": "force-deleted by the pod garbage collector",
                "force-deleted": "force-deleted by a client",
                "kubelet": "removed by its kubelet once the node was back",
            }.get(str(how), str(how))
            parts.append(f"pod {name} {by} after {gone:.1f} s")
    if handling == "none":
        parts.append(
            f"nobody applied {OUT_OF_SERVICE}, force-deleted the pods or deleted the Node, so Kubernetes "
            "could not replace them while the node stayed down"
        )
    return handling, "; ".join(parts)
