"""Publishing a pod's status as its kubelet: a JSON patch that first tests ``metadata.uid``.

:class:`StatusPublisher` writes the status a pod worker builds when it changed, or when
the API server's copy differs from it (the node lifecycle controller marks pods not ready
while the node is silent; the worker repairs that at most every :data:`REPUBLISH` s).
The uid test means a worker never writes into a newer pod of the same name; after a
failed write the next try waits half a second unless forced.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lab.kubeclient import ApiError, KubeClient
from lab.kubelet.status import OWNED_CONDITIONS, ContainerState, build_status

__all__ = ["REPUBLISH", "StatusPublisher"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
REPUBLISH = 1.0
RETRY = 0.5


class StatusPublisher:
    """The status writer of one pod (``uid``); remembers what it last wrote."""

    def __init__(self, client: KubeClient, namespace: str, name: str, uid: str, start_time: float) -> None:
        self.client = client
        self.namespace, self.name, self.uid = namespace, name, uid
        self.start_time = start_time
        self.published: Obj | None = None
        self._retry_after = 0.0
        self._republish_after = 0.0

    def _previous_status(self, pod: Obj) -> Obj:
        """The status to build on: what this worker last wrote, with others' conditions from the pod."""
        current = dict(pod.get("status") or {})
        if self.published is None:
            return current
        by_type = {c.get("type"): c for c in self.published.get("conditions") or []}
        for cond in current.get("conditions") or []:
            if isinstance(cond, dict) and cond.get("type") not in OWNED_CONDITIONS:
                by_type[cond.get("type")] = cond
        return {**current, "conditions": list(by_type.values()), "startTime": self.published.get("startTime")}

    def publish(
        self,
        pod: Obj,
        phase: str,
        init: list[ContainerState],
        regular: list[ContainerState],
        terminating: bool = False,
        force: bool = False,
    ) -> None:
        """Write the status built from ``phase`` and the containers' states, if it needs writing."""
        now = time.monotonic()
        if not force and now < self._retry_after:
            return
        status = build_status(
            self._previous_status(pod),
            phase=phase,
            init=init,
            regular=regular,
            start_time=self.start_time,
            now=time.time(),
            terminating=terminating,
        )
        if status == self.published and (status == pod.get("status") or now < self._republish_after):
            return
        ops = [
            {"op": "test", "path": "/metadata/uid", "value": self.uid},
            {"op": "add", "path": "/status", "value": status},
        ]
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        try:
            self.client.request("PATCH", path, ops, content_type="application/json-patch+json")
            self.published = status
            self._republish_after = now + REPUBLISH
        except ApiError as exc:
            if exc.code in (404, 422):
                self.published = status
                return
            log.debug("status of %s/%s not published: %s", self.namespace, self.name, exc)
            self._retry_after = now + RETRY
