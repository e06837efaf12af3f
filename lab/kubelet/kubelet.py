"""The kubelet process: node agent, pod informer, one worker per pod, reaping.

:meth:`Kubelet.run` blocks until :meth:`Kubelet.stop` (SIGTERM/SIGINT in the CLI):

1. becomes a child subreaper and kills what a previous kubelet of this node left
   running (its container records); makes the folders pods' own folders go under
   (:attr:`~lab.kubelet.config.KubeletConfig.runtime_dir`: others may traverse them, not
   list them) and says once when it is not root (then it cannot start containers as
   other users, :mod:`lab.kubelet.run_as`); with ``node_cpu``, makes (or reuses) the node's CPU
   cgroup, which every container's main process joins right after it is started, so
   everything it forks later (PostgreSQL and its backends) shares the node's quota;
2. registers the Node and heartbeats (:mod:`lab.kubelet.node`);
3. lists and watches pods with ``spec.nodeName=<node>`` (relisting every
   ``resync`` seconds and after any watch error); a pod seen for the first time gets
   a :class:`~lab.kubelet.worker.PodWorker`; a pod that disappears from a
   successful list or watch is stopped (2 s grace) and cleaned up;
4. reaps adopted orphans every second.

On stop, every pod's containers are stopped (grace capped at ``stop_grace_cap``),
the pods are reported not ready and the node NotReady, and the node's CPU cgroup is
removed; the pods stay bound to the node, and the next kubelet of this node runs them again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from lab import processes
from lab.cgroups import CpuGroup
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient, user_agent
from lab.kubelet.config import STATE_MARKER, KubeletConfig, prune_fallbacks
from lab.kubelet.node import NodeAgent
from lab.kubelet.podspec import TRAVERSE_ONLY, make_dir
from lab.kubelet.run_as import can_switch_users
from lab.kubelet.runtime import Spawner, kill_leftovers
from lab.kubelet.worker import PodWorker

__all__ = ["Kubelet"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
REAP_INTERVAL = 1.0


class _Relist(Exception):
    pass


class Kubelet:
    """One node's kubelet (see the module doc)."""

    def __init__(self, cfg: KubeletConfig) -> None:
        self.cfg = cfg
        self.spawner = Spawner()
        self.stopping = threading.Event()
        self.node_agent = NodeAgent(cfg, self.new_client())
        self._lock = threading.Lock()
        self._pods: dict[str, Obj] = {}
        self._synced = False
        self._changed = threading.Event()
        self._workers: dict[str, PodWorker] = {}
        self._done: set[str] = set()
        self.cpu_group: CpuGroup | None = None
        #: Where pods' own folders go (decided in :meth:`run`, once the state folder exists).
        self.runtime_dir = cfg.state_dir
        self.can_switch = can_switch_users()
        self.events_client = self.new_client()

    def new_client(self) -> KubeClient:
        """A client of its own (one HTTP session per thread)."""
        return self.cfg.access.client(user_agent("lab-kubelet"), timeout=5.0)

    def stop(self) -> None:
        """Ask :meth:`run` to stop the pods and return (safe from a signal handler)."""
        self.stopping.set()
        self._changed.set()

    @property
    def workers(self) -> dict[str, PodWorker]:
        return dict(self._workers)

    def run(self) -> int:
        for folder in (self.cfg.state_dir, self.cfg.logs, self.cfg.volumes, self.cfg.containers_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._prepare_runtime_dir()
        processes.become_subreaper()
        left = kill_leftovers(self.cfg.containers_dir)
        if left:
            log.info("killed %d processes left by a previous kubelet of %s", left, self.cfg.node)
        if self.cfg.node_cpu is not None:
            self.cpu_group = CpuGroup.create(self.cfg.cpu_group, self.cfg.node_cpu)
            log.info(
                "node %s limited to %g CPUs (cgroup %s)",
                self.cfg.node,
                self.cfg.node_cpu,
                self.cpu_group.path,
            )
        self.node_agent.start()
        informer = threading.Thread(target=self._inform, name="pod-informer", daemon=True)
        informer.start()
        log.info("kubelet for node %s started (server %s)", self.cfg.node, self.cfg.server)
        reaped = 0.0
        while not self.stopping.is_set():
            self._changed.wait(0.2)
            self._changed.clear()
            if self.stopping.is_set():
                break
            self._reconcile()
            if time.monotonic() - reaped >= REAP_INTERVAL:
                self.spawner.reap()
                reaped = time.monotonic()
        self._shutdown()
        return 0

    def _prepare_runtime_dir(self) -> None:
        """``<runtime>/pods`` and ``<runtime>/emptydir``, traverse-only; say once when users cannot switch."""
        self.runtime_dir = self.cfg.runtime_dir
        for gone in prune_fallbacks(keep=self.runtime_dir):
            log.info("removed %s: its kubelet's state folder is gone", gone)
        if self.runtime_dir != self.cfg.state_dir:
            make_dir(self.runtime_dir, TRAVERSE_ONLY)
            if self.runtime_dir.is_symlink() or self.runtime_dir.lstat().st_uid != os.geteuid():
                raise LabError(
                    f"{self.runtime_dir} is not this kubelet's own folder (a symlink or another user's): "
                    "remove it, or give the kubelet a state folder every user can traverse"
                )
            (self.runtime_dir / STATE_MARKER).write_text(f"{self.cfg.state_dir}\n")
            log.warning(
                "node %s: other users cannot reach %s, so pods' folders go under %s",
                self.cfg.node,
                self.cfg.state_dir,
                self.runtime_dir,
            )
        for folder in (self.runtime_dir, self.runtime_dir / "pods", self.runtime_dir / "emptydir"):
            make_dir(folder, TRAVERSE_ONLY)
            if folder != self.cfg.state_dir and folder.stat().st_uid == os.geteuid():
                folder.chmod(TRAVERSE_ONLY)
        self.cfg.containers_dir.chmod(0o700)
        if not self.can_switch:
            log.warning(
                "node %s: the kubelet runs as uid %d, not root, so it cannot switch users: every "
                "container runs as uid %d (securityContext users and groups are not applied)",
                self.cfg.node,
                os.geteuid(),
                os.geteuid(),
            )

    def _shutdown(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            worker.wake()
        deadline = time.monotonic() + self.cfg.stop_grace_cap + 10
        for worker in workers:
            worker.finished.wait(max(0.0, deadline - time.monotonic()))
        self.node_agent.stop(report_not_ready=True)
        kill_leftovers(self.cfg.containers_dir)
        self.spawner.reap()
        if self.cpu_group is not None:
            try:
                self.cpu_group.remove()
            except LabError as exc:
                log.warning("node %s: %s", self.cfg.node, exc)
        log.info("kubelet for node %s stopped", self.cfg.node)

    # -- pods -------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        with self._lock:
            pods, synced = dict(self._pods), self._synced
        for uid, pod in pods.items():
            if uid in self._done:
                continue
            worker = self._workers.get(uid)
            if worker is None:
                worker = PodWorker(self, pod)
                self._workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid, worker in list(self._workers.items()):
            if synced and uid not in pods:
                worker.update(None)
            if worker.finished.is_set():
                del self._workers[uid]
                self._done.add(uid)
        if synced:
            self._done &= set(pods)

    def _inform(self) -> None:
        client = self.new_client()
        selector = f"spec.nodeName={self.cfg.node}"
        failures = 0
        while not self.stopping.is_set():
            try:
                listing = client.request("GET", "/api/v1/pods", params={"fieldSelector": selector})
                version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
                with self._lock:
                    self._pods = {p["metadata"]["uid"]: p for p in listing.get("items") or []}
                    self._synced = True
                self._changed.set()
                failures = 0
                self._watch(client, selector, version)
            except (_Relist, ApiError, ValueError, KeyError) as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning("pod informer: %s; listing again", exc)
                self.stopping.wait(min(2.0, 0.2 * failures))

    def _watch(self, client: KubeClient, selector: str, version: str) -> None:
        deadline = time.monotonic() + self.cfg.resync
        while not self.stopping.is_set() and time.monotonic() < deadline:
            left = max(1, int(deadline - time.monotonic()))
            for event in client.watch("pods", None, version, timeout_seconds=left, fields=selector):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _Relist(str(obj.get("message", "watch error")))
                md = obj.get("metadata") or {}
                version = str(md.get("resourceVersion") or version)
                uid = md.get("uid")
                if not uid:
                    continue
                with self._lock:
                    if event.get("type") == "DELETED":
                        self._pods.pop(uid, None)
                    else:
                        self._pods[uid] = obj
                self._changed.set()
                if self.stopping.is_set():
                    return
