"""What a pod worker tells the API server besides the status: Events, and the final deletion.

Events on the pod, in the kubelet's words (component ``kubelet``, host the node;
``involvedObject.fieldPath`` ``spec.containers{<name>}``): ``Pulled`` "Container image
"<image>" already present on machine", ``Created`` "Created container: <name>",
``Started`` "Started container <name>", ``Killing`` "Stopping container <name>" (or
"Container <name> failed liveness probe, will be restarted"), Warnings ``Unhealthy``
"Readiness probe failed: ..." (each failed probe; the recorder aggregates repeats),
``BackOff`` "Back-off restarting failed container <name> in pod <pod>_<ns>(<uid>)" and
``Failed`` "Error: ..." when a container cannot be started. They are queued
(:func:`lab.events.record_later`): the worker never waits on the API server for one, and
when the queue is full an Event is dropped, as client-go's broadcaster drops them.

When a pod's containers have stopped, :func:`retire_pod_logs` moves its log files aside
(``<logs>/previous/<stem>.<uid>.log``, a few kept per name) so a new pod of the same
name starts a fresh log, and :func:`confirm_deleted` removes the pod from the API server
(``DELETE gracePeriodSeconds=0`` with a uid precondition).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from lab.events import record_later
from lab.kubeclient import ApiError, KubeClient
from lab.kubelet.container_log import log_file_for, retire_log

__all__ = ["CONFIRM_DEADLINE", "PodEvents", "confirm_deleted", "retire_pod_logs"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

#: How long the final delete is retried.
CONFIRM_DEADLINE = 30.0


class PodEvents:
    """Records Events on one pod (see the module doc) as the kubelet of ``node``."""

    def __init__(self, client: KubeClient, node: str, namespace: str, name: str, uid: str) -> None:
        """``client``: the kubelet's client for Events (used only by the Event sender thread)."""
        self.client = client
        self.node = node
        self.ref: Obj = {"kind": "Pod", "apiVersion": "v1", "namespace": namespace, "name": name, "uid": uid}

    def emit(
        self, container: str | None, init: bool, reason: str, message: str, etype: str = "Normal"
    ) -> None:
        """Queue an Event on the pod (on ``container`` when given; ``init``: an init container)."""
        ref = dict(self.ref)
        if container is not None:
            ref["fieldPath"] = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
        record_later(self.client, ref, reason, message, type=etype, component="kubelet", host=self.node)


def confirm_deleted(
    client: KubeClient, namespace: str, name: str, uid: str, stopping: threading.Event
) -> None:
    """Delete the pod for good (uid precondition), retrying until done, gone or ``stopping``."""
    body = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    deadline = time.monotonic() + CONFIRM_DEADLINE
    while not stopping.is_set() and time.monotonic() < deadline:
        try:
            client.request("DELETE", path, body)
            return
        except ApiError as exc:
            if exc.code in (404, 409):
                return
            log.warning("could not confirm deletion of %s/%s: %s", namespace, name, exc)
        time.sleep(0.5)


def retire_pod_logs(logs_dir: Path, pod: Obj, containers: list[tuple[str, bool]], uid: str) -> None:
    """Move the log files of ``containers`` (name, is init) aside, tagged with the pod's ``uid``."""
    for name, init in containers:
        retire_log(log_file_for(logs_dir, pod, name, init=init), uid[:8])
