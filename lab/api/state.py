"""The server's shared state: settings, registry, store, and what ties them together.

Opening the state loads the store, serves every stored CRD's resources and makes
sure the standard namespaces exist. A store listener keeps the registry in step with
CRDs as they are created, changed and removed. ``wake`` is set by the background
controllers (:mod:`lab.api.controllers`) so request handlers can poke them.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from typing import Any

from lab.api.crds import crd_types
from lab.api.fields import as_str, dig
from lab.api.history import Event
from lab.api.resources import CRD_KEY, Registry
from lab.api.settings import Settings
from lab.api.store import Store
from lab.api.wal import Wal
from lab.errors import LabError

__all__ = ["SYSTEM_NAMESPACES", "State"]

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class State:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry()
        wal = Wal(settings.data_dir, settings.compact_bytes) if settings.data_dir is not None else None
        self.store = Store(wal, settings.watch_history)
        self.store.listeners.append(self._on_event)
        self.removal_due: dict[str, float] = {}
        self.wake: Callable[[], None] = lambda: None
        self._lock_fd = -1

    def _lock(self) -> None:
        folder = self.settings.data_dir
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "apiserver.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise LabError(
                f"another API server is using {folder}: stop it first or pick another --data folder"
            ) from exc
        self._lock_fd = fd

    def open(self) -> None:
        """Lock the data folder, load the state, serve stored CRDs, create the system namespaces."""
        self._lock()
        self.store.open()
        for crd in self.store.scan(CRD_KEY):
            self._serve(crd)
        for name in SYSTEM_NAMESPACES:
            if self.store.peek("namespaces", "", name) is None:
                self.store.create(
                    "namespaces",
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                        "spec": {},
                        "status": {"phase": "Active"},
                    },
                )

    def close(self) -> None:
        self.store.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _serve(self, crd: dict[str, Any]) -> None:
        name = as_str(dig(crd, "metadata", "name"))
        try:
            self.registry.set_custom(name, crd_types(crd))
        except Exception:
            log.exception("cannot serve CRD %s", name)

    def _on_event(self, event: Event) -> None:
        if event.key != CRD_KEY:
            return
        if event.type == "DELETED":
            self.registry.remove_custom(as_str(dig(event.obj, "metadata", "name")))
        else:
            self._serve(event.obj)
