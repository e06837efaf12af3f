"""Watching the cluster load's master: its status through the service proxy, the mirror thread.

Moved here from :mod:`loadgen.cluster_load`, whose :class:`~loadgen.cluster_load.ClusterLoadRun`
mixes :class:`MasterWatch` in (start, stop and the collection view stay there). The methods
work on the run's own fields, declared below.

Every ``interval`` s (0.3) a thread asks the master for ``/harness/status`` through the
API server's service proxy, then fetches the new bytes of every journal file it lists into
the run's :class:`~loadgen.cluster_mirror.JournalMirror` (append-only, complete lines).
The master is *lost* when the proxy has failed for more than ``lost_after`` s (5), when
its pod is gone or ended, when its id (a uuid per master process) changes, or when the
mirror itself fails: one line in ``problems`` says which, and ``died_at`` is set unless a
stop was already asked for. A lost master is never forgiven.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote

from loadgen.cluster_api import KubeTransport, Transport, api_client, decode_json, proxy_path
from loadgen.cluster_mirror import JournalMirror
from loadgen.cluster_objects import LoadObjectsApi, status_message
from loadgen.errors import LoadgenError

__all__ = ["MasterWatch"]

_CHUNK = 8 * 1024 * 1024  # the most one journal request returns


class MasterWatch:
    """The load master as seen through the API server: status, journal mirror, lost or not.

    A mixin: the class using it (a dataclass) provides these fields.
    """

    namespace: str
    kubeconfig: str | None
    transport: Transport | None
    ident: str
    service: str
    workers: int
    interval: float
    lost_after: float
    mirror: JournalMirror
    problems: list[str]
    stop_requested_at: float | None
    died_at: float | None
    _objects: LoadObjectsApi | None
    _last: dict[str, Any] | None
    _master: str | None
    _lost: str | None
    _failing_since: float | None
    _short_noted: bool
    _halt: threading.Event
    _done: threading.Event

    def _t(self) -> Transport:
        if self.transport is None:
            self.transport = KubeTransport(api_client(self.kubeconfig))
        return self.transport

    @property
    def objects(self) -> LoadObjectsApi:
        if self._objects is None:
            self._objects = LoadObjectsApi(self._t(), self.namespace, self.ident)
        return self._objects

    def _proxy(self, method: str, rest: str, query: list[tuple[str, str]] | None = None) -> tuple[int, bytes]:
        path = proxy_path(self.namespace, self.service, "web", f"harness/{rest}")
        return self._t().request(method, path, query=query, timeout=5.0)

    def _status(self) -> dict[str, Any]:
        status, body = self._proxy("GET", "status")
        if status != 200:
            raise LoadgenError(f"GET /harness/status answered {status}: {status_message(body)}")
        doc = decode_json(body, "the load master's /harness/status")
        if not isinstance(doc, dict):
            raise LoadgenError("the load master's /harness/status is not a JSON object")
        return doc

    def _watch(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.mirror_once()
            except Exception as exc:  # never let the mirror die silently
                self.problems.append(f"the journal mirror failed: {exc.__class__.__name__}: {exc}")
                self._mark_lost(f"the journal mirror failed ({exc.__class__.__name__})")
                return
            if self._lost is not None:
                return

    def mirror_once(self) -> None:
        """One round: the master's status, then the new bytes of every journal file it lists."""
        try:
            doc = self._status()
        except LoadgenError as exc:
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            gone = self._master_gone()
            if gone:
                self._mark_lost(gone)
            elif now - self._failing_since > self.lost_after:
                self._mark_lost(
                    "it has not answered through the API server's service proxy for "
                    f"{self.lost_after:g} s ({exc})"
                )
            return
        self._failing_since = None
        if str(doc.get("master")) != self._master:
            self._mark_lost(
                f"its id changed from {self._master} to {doc.get('master')} (it restarted): "
                "what it had collected is gone"
            )
            return
        self._last = doc
        connected = int(doc.get("connected") or 0)
        if self.stop_requested_at is None and connected < self.workers and not self._short_noted:
            self._short_noted = True
            self.problems.append(
                f"only {connected} of {self.workers} load workers connected at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: a worker was lost"
            )
        for name, offset in self.mirror.wanted(doc.get("files") or {}):
            self._fetch(name, offset)

    def _fetch(self, name: str, offset: int) -> None:
        for _ in range(8):  # catch up in chunks, but never hold the round forever
            status, body = self._proxy("GET", f"journal/{quote(name, safe='')}", [("offset", str(offset))])
            if status != 200:
                raise LoadgenError(f"GET /harness/journal/{name} answered {status}")
            written = self.mirror.append(name, offset, body)
            if written == 0 or len(body) < _CHUNK:
                return
            offset += written

    def _master_gone(self) -> str | None:
        try:
            pods = self.objects.pods("master")
        except LoadgenError:
            return None  # the API itself is unreachable: the proxy timeout decides
        if not pods:
            return "its pod is gone"
        phase = (pods[0].get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded"):
            return f"its pod ended ({self.objects.story('master')})"
        return None

    def _mark_lost(self, reason: str) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        self.problems.append(f"the load master was lost: {reason}")
        if self.stop_requested_at is None:
            self.died_at = time.time()
            self._done.set()
