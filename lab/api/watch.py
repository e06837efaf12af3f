"""Watch streams: chunked JSON lines ``{"type": ADDED|MODIFIED|DELETED|ERROR, "object": ...}``.

Without ``resourceVersion`` (or with ``"0"``) the stream starts with ADDED for every
current object; with ``resourceVersion=N`` it replays the changes after N from the
history, or, if they are no longer kept (older than ``Settings.watch_window`` seconds,
as etcd compacts its history, or pushed out by the ``watch_history`` count), sends one
ERROR event carrying a 410 ``Expired`` Status ``too old resource version: N (M)`` (the
real server's answer, which clients treat as "list again") and ends. Selectors apply
to both the old and new state, so an object leaving the selection is reported DELETED
and one entering it ADDED. ``timeoutSeconds`` ends the
stream (default 30 minutes). With a Table Accept header each event carries a Table.
``sendInitialEvents=true`` (client-go's watch-list) ends the initial events with the
``k8s.io/initial-events-end`` BOOKMARK. With ``allowWatchBookmarks=true`` a BOOKMARK
carrying the newest resourceVersion is sent after a quiet spell (at most every minute, a
fifth of the window when that is shorter) and when the stream times out, so a client
whose selector matched nothing for a while resumes inside the window instead of relisting.
An optional :class:`~lab.api.views.View` serves a resource from another type's storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from lab.api.fields import meta
from lab.api.history import Event
from lab.api.reads import bool_param, int_param
from lab.api.routing import Target
from lab.api.state import State
from lab.api.status import bad_request, status_body
from lab.api.tables import negotiate, partial_metadata
from lab.api.views import View

__all__ = ["watch"]

DEFAULT_TIMEOUT = 1800
BOOKMARK_INTERVAL = 60.0
MAX_TIMEOUT = 24 * 3600


def _bookmark(api_version: str, kind: str, rv: int, initial_end: bool = False) -> bytes:
    """A BOOKMARK at ``rv`` (``initial_end``: the one ending a watch-list's initial events)."""
    md: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    bookmark = {"kind": kind, "apiVersion": api_version, "metadata": md}
    return json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n"


def _bookmark_interval(state: State) -> float:
    window = state.settings.watch_window
    return BOOKMARK_INTERVAL if window <= 0 else max(0.2, min(BOOKMARK_INTERVAL, window / 5))


def _expired(message: str) -> dict[str, Any]:
    return {"type": "ERROR", "object": status_body(410, "Expired", message)}


async def watch(
    request: web.Request, state: State, target: Target, view: View | None = None
) -> web.StreamResponse:
    """A watch stream (``view``: how the objects are stored and shown; by default ``target.rt``)."""
    view = View(target.rt) if view is None else view
    rt = view.rt
    labels, fields = view.selectors(request.query)
    timeout = min(int_param(request.query, "timeoutSeconds", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT, MAX_TIMEOUT)
    rv_param = request.query.get("resourceVersion", "")
    wanted, version = negotiate(request.headers.get("Accept", ""))
    include = request.query.get("includeObject", "Metadata")

    def matches(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        md = meta(obj)
        if target.namespace is not None and md.get("namespace") != target.namespace:
            return False
        if target.name is not None and md.get("name") != target.name:
            return False
        return labels.matches(md.get("labels")) and fields.matches(obj)

    def translate(event: Event) -> tuple[str, dict[str, Any]] | None:
        now, before = matches(event.obj), matches(event.old)
        if event.type == "MODIFIED":
            kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else ""
        else:
            kind = event.type if now else ""
        return (kind, event.obj) if kind else None

    def encode(kind: str, obj: dict[str, Any]) -> bytes:
        if wanted == "Table":
            shown = view.table([obj], str(meta(obj).get("resourceVersion", "")), include, version)
        elif wanted in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            shown = partial_metadata(obj, version)
        else:
            shown = view.show(obj)
        return json.dumps({"type": kind, "object": shown}, separators=(",", ":")).encode() + b"\n"

    if rv_param not in ("", "0") and not (rv_param.isascii() and rv_param.isdigit() and len(rv_param) <= 20):
        raise bad_request(f"invalid resourceVersion {rv_param[:40]!r}")
    history = state.store.history
    sub = history.subscribe(view.key)
    initial: list[tuple[str, dict[str, Any]]] | None
    send_initial = bool_param(request.query, "sendInitialEvents")
    bookmarks = bool_param(request.query, "allowWatchBookmarks")
    interval = _bookmark_interval(state)
    if rv_param in ("", "0") or send_initial:
        initial = [("ADDED", o) for o in state.store.scan(view.key, target.namespace) if matches(o)]
    else:
        events = history.since(int(rv_param), view.key)
        initial = None if events is None else [t for t in map(translate, events) if t is not None]
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        if initial is None:
            message = f"too old resource version: {rv_param} ({history.floor + 1})"
            await response.write(json.dumps(_expired(message)).encode() + b"\n")
            return response
        for kind, obj in initial:
            await response.write(encode(kind, obj))
        if send_initial:
            await response.write(_bookmark(rt.api_version, rt.kind, state.store.rv, initial_end=True))
        clock = asyncio.get_running_loop().time
        deadline = clock() + max(0, timeout)
        marked = clock()
        while True:
            remaining = deadline - clock()
            if remaining <= 0:
                if bookmarks and sub.queue.empty():
                    await response.write(_bookmark(rt.api_version, rt.kind, state.store.rv))
                break
            try:
                event = await asyncio.wait_for(
                    sub.queue.get(), min(remaining, interval) if bookmarks else remaining
                )
            except TimeoutError:
                if not bookmarks:
                    break
                event = None
            else:
                if event is None:
                    if sub.expired:
                        await response.write(
                            json.dumps(_expired("watch fell too far behind")).encode() + b"\n"
                        )
                    break
            out = translate(event) if event is not None else None
            if out is not None:
                await response.write(encode(*out))
            if bookmarks and clock() - marked >= interval and sub.queue.empty():
                await response.write(_bookmark(rt.api_version, rt.kind, state.store.rv))
                marked = clock()
    except ConnectionError:
        return response
    finally:
        history.unsubscribe(sub)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response
