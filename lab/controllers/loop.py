"""The reconcile-loop helper every lab controller runs on, and the object helpers they share.

A :class:`Loop` calls one controller's ``reconcile_once`` in its own thread every
``interval`` seconds (a level-triggered resync) and sooner when woken; a
:class:`Watcher` holds a watch on one kind and wakes the loops that care, so a change
is acted on within milliseconds while a lost watch costs at most one interval.
Errors in a pass are logged and the next pass retries; nothing here raises. Within a pass,
each object is reconciled under :func:`one_object`, so one object the controller cannot
handle is skipped (logged) and the others are still reconciled.

Helpers: controller ownerReferences (``controller`` and ``blockOwnerDeletion`` true,
which chaosk8s' drain and the garbage collector rely on), RFC 3339 times, pod
readiness, template hashes, and the three requests :class:`~lab.kubeclient.KubeClient`
has no verb for (strategic merge patch, pod binding, delete with a propagation policy).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from common.times import format_time, parse_time
from lab.events import record
from lab.kubeclient import KINDS, ApiError, Kind, KubeClient

__all__ = [
    "Controller",
    "Loop",
    "Obj",
    "Watcher",
    "bind_pod",
    "condition",
    "controller_ref",
    "controller_uid",
    "delete_with_propagation",
    "disrupt_pod",
    "format_time",
    "is_active_pod",
    "is_node_ready",
    "is_pod_ready",
    "is_terminating",
    "new_pod",
    "one_object",
    "owned_by",
    "parse_time",
    "pod_available",
    "strategic_patch",
    "template_hash",
]

Obj = dict[str, Any]
log = logging.getLogger(__name__)

_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.SafeEncodeString alphabet


_skipped: dict[tuple[str, str], tuple[str, str]] = {}  # (controller, uid) -> (resourceVersion, problem)
_skipped_lock = threading.Lock()


@contextlib.contextmanager
def one_object(controller: str, obj: Obj, client: KubeClient | None = None) -> Iterator[None]:
    """Reconcile one object: what goes wrong with it is logged, and the pass goes on.

    An unreachable API server (a client error with code 0) still ends the pass, as it
    would for every object. A problem is logged once per version of the object, then at
    DEBUG until the object changes, so a bad object does not flood the log every pass.
    With ``client``, that first time also records a Warning Event ``ReconcileError`` on
    the object (component ``<controller>-controller``), so ``kubectl describe`` shows it.
    """
    try:
        yield
    except ApiError as exc:
        if exc.code == 0:
            raise
        _skip(controller, obj, exc, traceback=False, client=client)
    except Exception as exc:
        _skip(controller, obj, exc, traceback=True, client=client)


def _skip(
    controller: str, obj: Obj, exc: Exception, traceback: bool, client: KubeClient | None = None
) -> None:
    md = obj.get("metadata") or {}
    where = f"{md.get('namespace')}/{md.get('name')}" if md.get("namespace") else str(md.get("name"))
    problem = f"{type(exc).__name__}: {exc}"
    key, seen = (controller, str(md.get("uid") or where)), (str(md.get("resourceVersion") or ""), problem)
    with _skipped_lock:
        repeated = _skipped.get(key) == seen
        _skipped[key] = seen
    level = logging.DEBUG if repeated else logging.WARNING
    log.log(level, "%s: skipped %s %s this pass: %s", controller, obj.get("kind", ""), where, problem,
            exc_info=traceback and not repeated)  # fmt: skip
    if client is not None and not repeated:
        record(client, obj, "ReconcileError", f"skipped this pass: {problem}"[:1024], type="Warning",
               component=f"{controller}-controller")  # fmt: skip


class Controller(Protocol):
    """What a :class:`Loop` runs: one idempotent pass over everything the controller owns."""

    name: str
    interval: float
    watches: tuple[str, ...]

    def reconcile_once(self) -> None: ...


class Loop:
    """Run ``step`` every ``interval`` s, or ``min_gap`` s after a :meth:`wake`, until ``stop`` is set."""

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        interval: float,
        stop: threading.Event,
        min_gap: float = 0.03,
    ) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self.stop = stop
        self.min_gap = min_gap
        self.passes = 0
        self.failures = 0
        self.last_duration = 0.0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name=f"loop-{self.name}", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        while not self.stop.is_set():
            self._wake.clear()
            started = time.perf_counter()
            try:
                self.step()
            except ApiError as exc:
                self.failures += 1
                if self.stop.is_set():
                    return
                level = logging.DEBUG if exc.code == 0 else logging.WARNING
                log.log(level, "%s: pass failed: %s", self.name, exc)
            except Exception:
                self.failures += 1
                log.exception("%s: pass failed", self.name)
            self.passes += 1
            self.last_duration = time.perf_counter() - started
            self._wake.wait(self.interval)
            self.stop.wait(self.min_gap)


class Watcher:
    """Watch ``kind`` in every namespace and wake ``loops`` on each event (reconnects forever)."""

    def __init__(
        self,
        client: KubeClient,
        kind: str | Kind,
        loops: Iterable[Loop],
        stop: threading.Event,
        labels: str | None = None,
    ) -> None:
        self.client = client
        self.kind = KINDS[kind] if isinstance(kind, str) else kind
        self.loops = list(loops)
        self.stop = stop
        self.labels = labels
        self._thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.kind.plural}", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _wake_all(self) -> None:
        for loop in self.loops:
            loop.wake()

    def run(self) -> None:
        version: str | None = None
        while not self.stop.is_set():
            try:
                for event in self.client.watch(
                    self.kind, resource_version=version, timeout_seconds=30, labels=self.labels
                ):
                    if self.stop.is_set():
                        return
                    if event.get("type") == "ERROR":
                        version = None
                        break
                    version = str(event.get("object", {}).get("metadata", {}).get("resourceVersion") or "")
                    version = version or None
                    self._wake_all()
            except ApiError as exc:
                if exc.code == 410:
                    version = None
                self.stop.wait(0.5)
            except Exception:
                log.exception("watch on %s failed", self.kind.plural)
                version = None
                self.stop.wait(0.5)


# -- object helpers --------------------------------------------------------------------


def controller_ref(owner: Obj) -> Obj:
    """A controller ownerReference to ``owner`` (which must carry apiVersion and kind)."""
    md = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": md["name"],
        "uid": md["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str | None:
    """The uid of the object's controller, if it has one."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owned_by(objects: Iterable[Obj]) -> dict[str, list[Obj]]:
    """Group ``objects`` by their controller's uid (objects without a controller are left out)."""
    groups: dict[str, list[Obj]] = {}
    for obj in objects:
        uid = controller_uid(obj)
        if uid:
            groups.setdefault(uid, []).append(obj)
    return groups


def is_terminating(obj: Obj) -> bool:
    return obj.get("metadata", {}).get("deletionTimestamp") is not None


def condition(obj: Obj, ctype: str) -> Obj | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


def is_pod_ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def is_node_ready(node: Obj) -> bool:
    """The node's Ready condition is True."""
    return is_pod_ready(node)  # the same condition, read the same way


def disrupt_pod(client: KubeClient, pod: Obj, reason: str, message: str, grace: int | None = None) -> bool:
    """Mark ``pod`` ``DisruptionTarget=True`` with ``reason`` (as the controller deleting it does
    in Kubernetes), then DELETE it (``grace`` None: its own period; 0: force). False if it was gone."""
    md = pod["metadata"]
    mark = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(time.time()),
    }
    try:
        patch = {"status": {"conditions": [mark]}}
        strategic_patch(client, "pods", md["name"], patch, md["namespace"], "status")
        client.delete("pods", md["name"], md["namespace"], grace=grace)
    except ApiError as exc:
        if exc.code != 404:
            raise
        return False
    return True


def pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (what Deployments and ReplicaSets call available)."""
    if not is_pod_ready(pod) or is_terminating(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is None or now - since >= min_ready_seconds


def is_active_pod(pod: Obj) -> bool:
    """Not terminating and not finished: a pod that counts towards a controller's replicas."""
    return not is_terminating(pod) and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def new_pod(
    template: Obj,
    owner: Obj,
    *,
    name: str | None = None,
    generate_name: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """A Pod made from ``template`` (a PodTemplateSpec), controlled by ``owner``, in its namespace."""
    tmeta = template.get("metadata") or {}
    metadata: Obj = {
        "namespace": owner["metadata"]["namespace"],
        "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
        "ownerReferences": [controller_ref(owner)],
    }
    if tmeta.get("annotations"):
        metadata["annotations"] = dict(tmeta["annotations"])
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = generate_name or owner["metadata"]["name"] + "-"
    spec = json.loads(json.dumps(template.get("spec") or {}))
    spec.setdefault("volumes", [])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def template_hash(template: Any) -> str:
    """A stable 10-character hash of a pod template (Kubernetes' safe alphabet)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    number = int.from_bytes(hashlib.sha256(canonical).digest()[:8], "big")
    chars = []
    for _ in range(10):
        number, rest = divmod(number, len(_SAFE))
        chars.append(_SAFE[rest])
    return "".join(chars)


# -- requests KubeClient has no verb for ----------------------------------------------------


def strategic_patch(
    client: KubeClient, kind: str, name: str, patch: Obj, namespace: str | None = None, sub: str | None = None
) -> Obj:
    """Strategic merge patch (lists such as ``conditions`` merge by key instead of being replaced)."""
    path = KINDS[kind].path(namespace, name, sub)
    answer: Obj = client.request("PATCH", path, patch, content_type="application/strategic-merge-patch+json")
    return answer


def bind_pod(client: KubeClient, pod: Obj, node: str) -> None:
    """POST a Binding (what a scheduler does); ApiError 409 when the pod is already bound."""
    md = pod["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": md["name"], "namespace": md["namespace"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    client.request("POST", KINDS["pods"].path(md["namespace"], md["name"], "binding"), body)


def delete_with_propagation(
    client: KubeClient, kind: str, name: str, namespace: str | None, propagation: str = "Background"
) -> None:
    """DELETE with a propagation policy (batch/v1 Jobs orphan their pods without one); 404 is fine."""
    try:
        client.request("DELETE", KINDS[kind].path(namespace, name), params={"propagationPolicy": propagation})
    except ApiError as exc:
        if exc.code != 404:
            raise
