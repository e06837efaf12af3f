"""Node registration and heartbeat.

The kubelet creates its Node if missing (labels from :func:`lab.kubelet.config.node_labels`;
``spec`` is never touched, so a cordon survives a kubelet restart) and then, every
``heartbeat`` seconds, patches ``status.conditions``: Ready=True (reason KubeletReady)
with a fresh ``lastHeartbeatTime``, plus the three pressure conditions False. It also
renews a Lease ``kube-node-lease/<node>`` (``renewTime`` in microseconds,
``leaseDurationSeconds`` 4). A deleted Node is registered again. On a clean stop
the kubelet reports Ready=False (reason KubeletNotReady). The Node's ``capacity`` and
``allocatable`` cpu are its CPU quota in millicores when it has one (``--node-cpu``),
else the machine's CPUs.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from typing import Any

import psutil

from common.times import format_time, parse_time
from lab.kubeclient import ApiError, KubeClient
from lab.kubelet.config import KubeletConfig

__all__ = ["KUBELET_VERSION", "NodeAgent", "node_object"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
KUBELET_VERSION = "v1.30.0-lab"
LEASE_SECONDS = 4


def node_object(cfg: KubeletConfig) -> Obj:
    """The Node the kubelet registers (status included, as kubelets do)."""
    memory_ki = f"{psutil.virtual_memory().total // 1024}Ki"
    resources = {
        "cpu": f"{round(cfg.node_cpu * 1000)}m" if cfg.node_cpu else str(os.cpu_count() or 1),
        "memory": memory_ki,
        "pods": "110",
        "ephemeral-storage": "10Gi",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.node, "labels": dict(cfg.labels)},
        "spec": {},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": cfg.node},
            ],
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "lab",
                "kernelVersion": platform.release(),
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "containerRuntimeVersion": "lab://1",
                "machineID": cfg.node,
                "systemUUID": cfg.node,
                "bootID": "",
            },
            "conditions": [],
        },
    }


class NodeAgent(threading.Thread):
    """Registers the node and heartbeats until :meth:`stop` (see the module doc)."""

    def __init__(self, cfg: KubeletConfig, client: KubeClient) -> None:
        super().__init__(name=f"node-{cfg.node}", daemon=True)
        self.cfg = cfg
        self.client = client
        self.registered = threading.Event()
        self._stop = threading.Event()
        self._ready_since: float | None = None
        self._last_error = ""
        self.beats = 0

    def run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                if not self.registered.is_set():
                    self.register()
                self.heartbeat()
                self._last_error = ""
            except ApiError as exc:
                if exc.code == 404:
                    self.registered.clear()
                if str(exc) != self._last_error:
                    log.warning("node %s: heartbeat failed: %s", self.cfg.node, exc)
                    self._last_error = str(exc)
            self._stop.wait(max(0.05, self.cfg.heartbeat - (time.monotonic() - began)))

    def stop(self, report_not_ready: bool = True) -> None:
        self._stop.set()
        if report_not_ready and self.registered.is_set():
            try:
                self.client.patch(
                    "nodes", self.cfg.node, {"status": {"conditions": self._conditions(False)}}, sub="status"
                )
            except ApiError as exc:
                log.info("node %s: could not report NotReady: %s", self.cfg.node, exc)

    def register(self) -> None:
        existing = self.client.get_or_none("nodes", self.cfg.node)
        body = node_object(self.cfg)
        if existing is None:
            self._ready_since = time.time()
            body["status"]["conditions"] = self._conditions(True)
            try:
                self.client.create("nodes", body)
            except ApiError as exc:
                if exc.code != 409:
                    raise
        else:
            ready = next(
                (
                    c
                    for c in (existing.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Ready"
                ),
                None,
            )
            self._ready_since = time.time()
            if ready is not None and ready.get("status") == "True":
                since = parse_time(ready.get("lastTransitionTime"))
                if since is not None:
                    self._ready_since = since
            labels = {**((existing.get("metadata") or {}).get("labels") or {}), **self.cfg.labels}
            self.client.patch("nodes", self.cfg.node, {"metadata": {"labels": labels}})
            status = dict(body["status"])
            status["conditions"] = self._conditions(True)
            self.client.patch("nodes", self.cfg.node, {"status": status}, sub="status")
        self.registered.set()
        log.info("node %s registered", self.cfg.node)

    def heartbeat(self) -> None:
        self.client.patch(
            "nodes", self.cfg.node, {"status": {"conditions": self._conditions(True)}}, sub="status"
        )
        self.beats += 1
        self._renew_lease()

    def _conditions(self, ready: bool) -> list[Obj]:
        now = time.time()
        if not ready:
            self._ready_since = None
        since = format_time(self._ready_since or now)
        beat = format_time(now)
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": r,
                "message": m,
                "lastHeartbeatTime": beat,
                "lastTransitionTime": since,
            }
            for t, r, m in (
                ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else "kubelet is stopping",
                "lastHeartbeatTime": beat,
                "lastTransitionTime": since,
            }
        )
        return conditions

    def _renew_lease(self) -> None:
        now = format_time(digits=6)
        try:
            self.client.patch("leases", self.cfg.node, {"spec": {"renewTime": now}}, "kube-node-lease")
        except ApiError as exc:
            if exc.code != 404:
                return
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.cfg.node, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": self.cfg.node,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": now,
                    "acquireTime": now,
                },
            }
            try:
                self.client.create("leases", lease, "kube-node-lease")
            except ApiError:
                return
