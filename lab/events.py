"""Kubernetes Events from the lab's own components, recorded the way client-go records them.

:func:`record` writes a core ``v1`` Event about an object (``regarding``: the object
itself or an ObjectReference) named ``<object name>.<16 hex digits>`` (client-go's
``name.%x`` of the time in nanoseconds) in the object's namespace, ``default`` for
cluster-scoped objects such as Nodes. Repeats are aggregated like client-go's
EventCorrelator in a simple form: the same object, reason, message, type and component
seen again within :data:`AGGREGATE_WINDOW` seconds increments ``count`` and moves
``lastTimestamp`` on the existing Event (a PATCH) instead of creating another one.

Recording is best effort, as in Kubernetes: it never raises into the caller (problems
are logged at DEBUG), each request has a short timeout, and after the API server could
not be reached, was overloaded (429) or failed (5xx), the recorder stays quiet for
:data:`QUIET_AFTER_FAILURE` seconds so a frozen server does not slow down the component
that reports on it.

:func:`record_later` is what client-go's broadcaster does: the Event goes into a bounded
queue (:data:`QUEUE_SIZE`; when it is full the Event is dropped) and one background
thread per process sends it with :func:`record`, so the caller never waits on the API
server. The kubelet's pod workers record this way; :func:`flush` waits for the queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from common.times import format_time
from lab.kubeclient import KINDS, ApiError, KubeClient

__all__ = [
    "AGGREGATE_WINDOW",
    "QUEUE_SIZE",
    "QUIET_AFTER_FAILURE",
    "TIMEOUT",
    "flush",
    "forget",
    "record",
    "record_later",
    "reference",
]

log = logging.getLogger(__name__)

AGGREGATE_WINDOW = 600.0
TIMEOUT = 1.0
QUIET_AFTER_FAILURE = 5.0
QUEUE_SIZE = 256
_CACHE_LIMIT = 4096

_Key = tuple[str, ...]
# key -> (namespace, event name, count, monotonic time of the last occurrence)
_seen: dict[_Key, tuple[str, str, int, float]] = {}
_quiet_until: dict[str, float] = {}
_lock = threading.Lock()
_Job = tuple[KubeClient, dict[str, Any], str, str, dict[str, Any]]
_queue: queue.Queue[_Job] = queue.Queue(maxsize=QUEUE_SIZE)
_sender: list[threading.Thread] = []  # the background sender, once started


def reference(obj: dict[str, Any], field_path: str | None = None) -> dict[str, Any]:
    """The ObjectReference of ``obj`` (an object with metadata, or already a reference)."""
    if "metadata" not in obj:
        ref = {k: v for k, v in obj.items() if v not in (None, "")}
    else:
        md = obj.get("metadata") or {}
        ref = {
            "kind": obj.get("kind", ""),
            "namespace": md.get("namespace", ""),
            "name": md.get("name", ""),
            "uid": md.get("uid", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "resourceVersion": md.get("resourceVersion", ""),
        }
        ref = {k: v for k, v in ref.items() if v}
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def forget() -> None:
    """Drop what the recorder remembers (aggregation and quiet periods); for tests."""
    with _lock:
        _seen.clear()
        _quiet_until.clear()


def _event_name(name: str) -> str:
    return f"{name}.{time.time_ns():016x}"


def _send(client: KubeClient, method: str, path: str, body: dict[str, Any], ctype: str) -> None:
    client.request(method, path, body, content_type=ctype, timeout=TIMEOUT)


def record(
    client: KubeClient,
    regarding: dict[str, Any],
    reason: str,
    message: str,
    *,
    type: str = "Normal",
    component: str,
    host: str | None = None,
    action: str | None = None,
) -> None:
    """Record a v1 Event about ``regarding``; never raises, never waits longer than a short timeout."""
    try:
        _record(client, regarding, reason, message, type, component, host, action)
    except Exception as exc:  # best effort: an Event must never break its caller
        log.debug("event %s about %s not recorded: %s", reason, regarding.get("kind", ""), exc)


def _record(
    client: KubeClient,
    regarding: dict[str, Any],
    reason: str,
    message: str,
    etype: str,
    component: str,
    host: str | None,
    action: str | None,
) -> None:
    now_mono, server = time.monotonic(), client.server
    with _lock:
        if _quiet_until.get(server, 0.0) > now_mono:
            log.debug("event %s dropped: the API server was unreachable moments ago", reason)
            return
    ref = reference(regarding)
    name = str(ref.get("name") or "")
    if not name:
        log.debug("event %s dropped: the object has no name", reason)
        return
    namespace = str(ref.get("namespace") or "") or "default"
    key: _Key = (
        server,
        namespace,
        str(ref.get("kind", "")),
        name,
        str(ref.get("uid", "")),
        str(ref.get("fieldPath", "")),
        etype,
        reason,
        message,
        component,
        host or "",
    )
    stamp = format_time()
    with _lock:
        previous = _seen.get(key)
    try:
        if previous is not None and now_mono - previous[3] <= AGGREGATE_WINDOW:
            ev_ns, ev_name, count, _ = previous
            try:
                patch = {"count": count + 1, "lastTimestamp": stamp, "message": message}
                path = KINDS["events"].path(ev_ns, ev_name)
                _send(client, "PATCH", path, patch, "application/merge-patch+json")
                _remember(key, (ev_ns, ev_name, count + 1, now_mono))
                return
            except ApiError as exc:
                if exc.code != 404:  # expired or deleted: record it anew below
                    raise
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": _event_name(name), "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": component, **({"host": host} if host else {})},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": etype,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        if action:
            event["action"] = action
        _send(client, "POST", KINDS["events"].path(namespace), event, "application/json")
        _remember(key, (namespace, event["metadata"]["name"], 1, now_mono))
    except ApiError as exc:
        if exc.code in (0, 429) or exc.code >= 500:
            with _lock:
                _quiet_until[server] = time.monotonic() + QUIET_AFTER_FAILURE
        raise


def _remember(key: _Key, value: tuple[str, str, int, float]) -> None:
    with _lock:
        if len(_seen) >= _CACHE_LIMIT:
            oldest = min(_seen, key=lambda k: _seen[k][3])
            del _seen[oldest]
        _seen[key] = value


def record_later(
    client: KubeClient,
    regarding: dict[str, Any],
    reason: str,
    message: str,
    *,
    type: str = "Normal",
    component: str,
    host: str | None = None,
    action: str | None = None,
) -> bool:
    """Queue an Event for :func:`record` on the background sender; never waits.

    Returns False when the queue was full and the Event was dropped.
    """
    options = {"type": type, "component": component, "host": host, "action": action}
    with _lock:
        if not _sender or not _sender[0].is_alive():
            _sender[:] = [threading.Thread(target=_send_queued, name="event-sender", daemon=True)]
            _sender[0].start()
    try:
        _queue.put_nowait((client, dict(regarding), reason, message, options))
        return True
    except queue.Full:
        log.debug("event %s dropped: %d Events are waiting to be sent", reason, QUEUE_SIZE)
        return False


def _send_queued() -> None:
    while True:
        client, regarding, reason, message, options = _queue.get()
        try:
            record(client, regarding, reason, message, **options)
        finally:
            _queue.task_done()


def flush(timeout: float = 5.0) -> bool:
    """Wait up to ``timeout`` s until every queued Event was sent or dropped; False on timeout."""
    deadline = time.monotonic() + timeout
    with _queue.all_tasks_done:
        while _queue.unfinished_tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _queue.all_tasks_done.wait(left)
    return True
