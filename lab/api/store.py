"""The object store: plain dicts keyed by group-resource, namespace and name.

One global, monotonically increasing resourceVersion (a string of an int on the
wire) orders every change. :meth:`Store.create` sets ``uid``, ``resourceVersion``,
``creationTimestamp`` and ``generation`` 1; :meth:`Store.update` bumps ``generation``
when anything outside ``metadata`` and ``status`` changes (or deletion starts) and
writes nothing when the object did not change at all (no new version, no event).
Stored dicts are never mutated in place, so events may share them; callers get copies.
Every change is appended to the write-ahead log (if any) and announced to the watch
history and to listeners (synchronous callbacks that must not write to the store);
``await store.sync()`` before answering makes the change durable.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from lab.api.fields import clone, meta, now_rfc3339
from lab.api.history import Event, History
from lab.api.status import already_exists, not_found
from lab.api.wal import Wal

__all__ = ["Store"]

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _ident(obj: dict[str, Any]) -> tuple[str, str]:
    md = meta(obj)
    return str(md.get("namespace") or ""), str(md.get("name") or "")


class Store:
    def __init__(self, wal: Wal | None = None, history_size: int = 10_000) -> None:
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._uids: dict[str, tuple[str, str, str]] = {}
        self.rv = 0
        self.wal = wal
        self.history = History(history_size)
        self.listeners: list[Listener] = []

    # -- start-up -----------------------------------------------------------------

    def open(self) -> None:
        """Load the snapshot and replay the log (no-op without a log)."""
        if self.wal is None:
            return
        snap_rv, objects, records = self.wal.load()
        for key, items in objects.items():
            for obj in items:
                self._put(key, obj)
        self.rv = snap_rv
        self.history.floor = snap_rv
        for record in records:
            key, obj, rv = str(record["key"]), record["obj"], int(record["rv"])
            ns, name = _ident(obj)
            old = self._objects.get(key, {}).get((ns, name))
            if record["op"] == "del":
                self._drop(key, ns, name)
                self.history.append(Event(rv, "DELETED", key, obj))
            else:
                self._put(key, obj)
                self.history.append(Event(rv, "MODIFIED" if old else "ADDED", key, obj, old))
            self.rv = max(self.rv, rv)
        log.info("store loaded: %d objects at resourceVersion %d", len(self._uids), self.rv)

    # -- reads ----------------------------------------------------------------------

    def get(self, key: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._objects.get(key, {}).get((namespace, name))
        return clone(obj) if obj is not None else None

    def peek(self, key: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object itself: read it, never change it."""
        return self._objects.get(key, {}).get((namespace, name))

    def scan(self, key: str, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored objects of ``key`` (all namespaces when None), in key order, read-only."""
        bucket = self._objects.get(key, {})
        for ident in sorted(bucket):
            if namespace is None or ident[0] == namespace:
                yield bucket[ident]

    def copies(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [clone(o) for o in self.scan(key, namespace)]

    def stored_keys(self) -> list[str]:
        return [k for k, bucket in self._objects.items() if bucket]

    def locate(self, uid: str) -> tuple[str, str, str] | None:
        """(key, namespace, name) of the object with ``uid``, if it exists."""
        return self._uids.get(uid)

    def count(self) -> int:
        return len(self._uids)

    # -- writes ---------------------------------------------------------------------

    def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object (metadata.name set by the caller); 409 if the name is taken."""
        obj = clone(obj)
        md = obj.setdefault("metadata", {})
        ns, name = _ident(obj)
        if (ns, name) in self._objects.get(key, {}):
            plural, _, group = key.partition(".")
            raise already_exists(plural, name, group)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        md["generation"] = 1
        for server_field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(server_field, None)
        return self._commit("ADDED", key, obj, None)

    def update(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace the stored object of the same namespace/name (identity fields are kept)."""
        obj = clone(obj)
        ns, name = _ident(obj)
        old = self._objects.get(key, {}).get((ns, name))
        if old is None:
            plural, _, group = key.partition(".")
            raise not_found(plural, name, group)
        md, old_md = obj.setdefault("metadata", {}), meta(old)
        for fixed in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            if fixed in old_md:
                md[fixed] = old_md[fixed]
            else:
                md.pop(fixed, None)
        if obj == old:
            return clone(old)
        starts_deletion = "deletionTimestamp" in md and "deletionTimestamp" not in old_md
        if starts_deletion or _spec_part(obj) != _spec_part(old):
            md["generation"] = int(old_md.get("generation") or 0) + 1
        return self._commit("MODIFIED", key, obj, old)

    def delete(self, key: str, namespace: str, name: str) -> dict[str, Any]:
        """Remove the object now; returns its last state (with the deletion's resourceVersion)."""
        old = self._objects.get(key, {}).get((namespace, name))
        if old is None:
            plural, _, group = key.partition(".")
            raise not_found(plural, name, group)
        obj = clone(old)
        return self._commit("DELETED", key, obj, old)

    def _commit(self, kind: str, key: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        ns, name = _ident(obj)
        if kind == "DELETED":
            self._drop(key, ns, name)
        else:
            self._put(key, obj)
        if self.wal is not None:
            op = "del" if kind == "DELETED" else "put"
            self.wal.append({"rv": self.rv, "op": op, "key": key, "obj": obj})
        event = Event(self.rv, kind, key, obj, old)
        self.history.append(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("store listener failed on %s %s %s/%s", kind, key, ns, name)
        return clone(obj)

    def _put(self, key: str, obj: dict[str, Any]) -> None:
        ns, name = _ident(obj)
        self._objects.setdefault(key, {})[(ns, name)] = obj
        uid = meta(obj).get("uid")
        if isinstance(uid, str):
            self._uids[uid] = (key, ns, name)

    def _drop(self, key: str, ns: str, name: str) -> None:
        gone = self._objects.get(key, {}).pop((ns, name), None)
        if gone is not None:
            self._uids.pop(str(meta(gone).get("uid")), None)

    # -- durability -------------------------------------------------------------------

    async def sync(self) -> None:
        """Make every change so far durable; compact the log when it grew large."""
        if self.wal is None:
            return
        await self.wal.sync()
        if self.wal.needs_compaction():
            self.wal.compact(self.rv, self.snapshot())

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {key: list(bucket.values()) for key, bucket in self._objects.items() if bucket}

    def close(self) -> None:
        self.history.close_all()
        if self.wal is not None:
            self.wal.close()
