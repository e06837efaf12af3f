"""The control loops that live inside the API server.

* Garbage collection: an object whose ``ownerReferences`` all name uids that no longer
  exist is deleted (Background propagation; pods terminate gracefully). It runs after
  every deletion and every ``gc_interval`` seconds (which also catches dependents
  created with dangling owners, as the real collector does). Owners deleted with
  ``propagationPolicy: Foreground`` wait for their dependents (``deletion.foreground_pass``).
* Namespaces being deleted: their content is deleted, then the namespace.
* Terminating pods: with ``Settings.pod_removal_grace`` set the server removes them
  when their (capped) grace period is over, standing in for a kubelet.
* PodDisruptionBudget status follows every pod and PDB change.
Each pass runs to completion between requests (one event loop), then syncs the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from lab.api.deletion import DeleteOptions, delete, foreground_pass, remove_now
from lab.api.disruption import PDB_KEY, pdb_status
from lab.api.fields import as_int, as_list, as_str, dig, meta, parse_time
from lab.api.history import Event
from lab.api.state import State
from lab.api.status import ApiError

__all__ = ["Controllers"]

log = logging.getLogger(__name__)


class Controllers:
    def __init__(self, state: State) -> None:
        self.state = state
        self._wake = asyncio.Event()
        self._gc_due = True
        self._dirty_pdb_namespaces: set[str] = set()
        self._last_full = 0.0
        self._task: asyncio.Task[None] | None = None
        state.store.listeners.append(self._on_event)
        state.wake = self._wake.set

    def start(self) -> None:
        self._dirty_pdb_namespaces.update(
            as_str(dig(p, "metadata", "namespace")) for p in self.state.store.scan(PDB_KEY)
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lab-api-controllers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_event(self, event: Event) -> None:
        ns = as_str(dig(event.obj, "metadata", "namespace"))
        if event.type == "DELETED":
            self._gc_due = True
        if event.key in ("pods", PDB_KEY):
            self._dirty_pdb_namespaces.add(ns)
        if event.type != "DELETED" and meta(event.obj).get("deletionTimestamp") is not None:
            self._gc_due = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._idle_timeout())
            self._wake.clear()
            try:
                self.step()
                await self.state.store.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("API server control loop failed; retrying")
                await asyncio.sleep(0.5)

    def _idle_timeout(self) -> float:
        timeout = self.state.settings.gc_interval
        if self.state.removal_due:
            timeout = min(timeout, max(0.05, min(self.state.removal_due.values()) - time.monotonic()))
        elif self.state.settings.pod_removal_grace is not None:
            timeout = min(timeout, 0.5)
        return timeout

    def step(self) -> None:
        """One pass of every loop."""
        now = time.monotonic()
        if now - self._last_full >= self.state.settings.gc_interval:
            self._gc_due = True
            self._last_full = now
        self._remove_expired_pods()
        while self._gc_due:
            self._gc_due = False
            self._collect_garbage()
            try:
                foreground_pass(self.state)
            except Exception:  # never starve the namespace and budget loops
                log.exception("foreground deletion pass failed; the other loops go on")
            self._finish_namespaces()
        self._update_budgets()

    def _delete(self, key: str, ns: str, name: str, grace: int | None = None) -> None:
        rt = self.state.registry.by_key(key)
        if rt is None:
            return
        try:
            delete(self.state, rt, ns, name, DeleteOptions(grace=grace, propagation="Background"))
        except ApiError as exc:
            if exc.code != 404:
                log.warning("could not delete %s %s/%s: %s", key, ns, name, exc)

    def _collect_garbage(self) -> None:
        store = self.state.store
        for key in store.stored_keys():
            for obj in list(store.scan(key)):
                md = meta(obj)
                refs = [r for r in as_list(md.get("ownerReferences")) if isinstance(r, dict)]
                if not refs or md.get("deletionTimestamp") is not None:
                    continue
                if all(store.locate(as_str(r.get("uid"))) is None for r in refs):
                    log.info(
                        "garbage-collecting %s %s/%s (owners gone)", key, md.get("namespace"), md.get("name")
                    )
                    self._delete(key, as_str(md.get("namespace")), as_str(md.get("name")))

    def _finish_namespaces(self) -> None:
        store = self.state.store
        for ns_obj in list(store.scan("namespaces")):
            md = meta(ns_obj)
            if md.get("deletionTimestamp") is None:
                continue
            name = as_str(md.get("name"))
            for key in store.stored_keys():
                if key == "namespaces":
                    continue
                for obj in list(store.scan(key, name)):
                    if meta(obj).get("deletionTimestamp") is None:
                        self._delete(key, name, as_str(dig(obj, "metadata", "name")))
            left = sum(1 for key in store.stored_keys() if key != "namespaces" for _ in store.scan(key, name))
            if left == 0 and not as_list(md.get("finalizers")):
                remove_now(self.state, "namespaces", "", name)

    def _remove_expired_pods(self) -> None:
        grace_cap = self.state.settings.pod_removal_grace
        if grace_cap is None:
            return
        store, now, wall = self.state.store, time.monotonic(), time.time()
        for pod in list(store.scan("pods")):
            md = meta(pod)
            if md.get("deletionTimestamp") is None or as_int(md.get("deletionGracePeriodSeconds")) == 0:
                continue
            uid = as_str(md.get("uid"))
            due = self.state.removal_due.get(uid)
            if due is None:
                deadline = parse_time(md.get("deletionTimestamp")) or wall
                grace = as_int(md.get("deletionGracePeriodSeconds"))
                due = now + (deadline - grace + min(grace, grace_cap)) - wall
                self.state.removal_due[uid] = due
            if due <= now:  # confirm like a kubelet would: the pod goes unless finalizers hold it
                self.state.removal_due.pop(uid, None)
                self._delete("pods", as_str(md.get("namespace")), as_str(md.get("name")), grace=0)

    def _update_budgets(self) -> None:
        store = self.state.store
        dirty, self._dirty_pdb_namespaces = self._dirty_pdb_namespaces, set()
        for ns in dirty:
            for pdb in list(store.scan(PDB_KEY, ns)):
                status = pdb_status(self.state, pdb)
                if status != pdb.get("status"):
                    new: dict[str, Any] = store.get(PDB_KEY, ns, as_str(dig(pdb, "metadata", "name"))) or {}
                    new["status"] = status
                    store.update(PDB_KEY, new)
