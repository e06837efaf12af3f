"""``events.k8s.io/v1`` Events: a second view of the core ``v1`` Events store, and their expiry.

kube-apiserver keeps one Event storage and converts between the two APIs; so does this
server. Events are stored as core v1 objects (storage key ``events``); every request to
``/apis/events.k8s.io/v1/...`` converts bodies in and answers out (:func:`to_events_v1`,
:func:`to_core_v1`), so an Event created through one API reads through the other:

=============================  ===============================
core v1                        events.k8s.io/v1
=============================  ===============================
``message``                    ``note``
``involvedObject``             ``regarding``
``related``                    ``related``
``source``                     ``deprecatedSource``
``firstTimestamp``             ``deprecatedFirstTimestamp``
``lastTimestamp``              ``deprecatedLastTimestamp``
``count``                      ``deprecatedCount``
``reportingComponent``         ``reportingController``
``reportingInstance``, ``eventTime``, ``action``, ``series``, ``reason``, ``type``: same
=============================  ===============================

Creating through events.k8s.io/v1 is validated as there (``eventTime``,
``reportingController``, ``reportingInstance``, ``action`` and ``reason`` required, ``type``
``Normal`` or ``Warning``). Field selectors accept the new names (``regarding.name``,
``reportingController``) beside the core ones. :func:`expire_events` removes Events
last written more than :data:`EVENT_TTL` seconds ago (kube-apiserver's ``--event-ttl``).

Reads go through the generic list, get and watch code paths with an :class:`EventsView`
(:mod:`lab.api.views`), so paging, ``remainingItemCount``, bookmarks and 410s are the
core resources'; tables print the core v1 Event's columns.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

from aiohttp import web

from lab.api import deletion, verbs
from lab.api.authz import Authorizer
from lab.api.fields import clone, dig, meta, parse_time
from lab.api.handlers import delete_collection, dry_run_param, read_body, request_attributes
from lab.api.patch import PATCH_TYPES, json_patch, merge_patch, strategic_merge_patch
from lab.api.reads import bool_param, get_object, json_response, list_objects
from lab.api.resources import ResourceType
from lab.api.routing import Target
from lab.api.selectors import FieldSelector
from lab.api.state import State
from lab.api.status import ApiError, bad_request, invalid, method_not_allowed, not_found
from lab.api.tables import to_table
from lab.api.validation import check_kind, decode_body
from lab.api.views import View
from lab.api.watch import watch

__all__ = ["EVENT_TTL", "GROUP", "EventsView", "expire_events", "handle", "to_core_v1", "to_events_v1"]

GROUP = "events.k8s.io"
EVENT_TTL = 3600.0
_KEY = "events"
_RENAMES = (
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
)
_SAME = tuple(
    (field, field)
    for field in ("reportingInstance", "eventTime", "action", "series", "reason", "type", "related")
)
_TIMES = ("lastTimestamp", "eventTime", "firstTimestamp")


def _empty(value: Any) -> bool:
    return value in (None, "", {}, []) or (value == 0 and not isinstance(value, bool))


def _convert(source: dict[str, Any], api_version: str, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """An Event at ``api_version``; each non-empty ``source`` field named first in ``pairs``
    is copied under the name second."""
    out: dict[str, Any] = {"kind": "Event", "apiVersion": api_version, "metadata": clone(meta(source))}
    for field, renamed in pairs:
        if not _empty(source.get(field)):
            out[renamed] = clone(source[field])
    return out


def to_events_v1(core: dict[str, Any]) -> dict[str, Any]:
    """A stored core v1 Event as events.k8s.io/v1 shows it."""
    out = _convert(core, f"{GROUP}/v1", _RENAMES + _SAME)
    out.setdefault("eventTime", None)
    return out


def to_core_v1(new: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event as stored (core v1)."""
    out = _convert(new, "v1", tuple((renamed, old) for old, renamed in _RENAMES) + _SAME)
    out.setdefault("involvedObject", {})
    return out


class EventsView(View):
    """events.k8s.io/v1 Events served from the core v1 Event storage (``rt``: the served type)."""

    def __init__(self, state: State, rt: ResourceType) -> None:
        super().__init__(rt, state.registry.builtin(_KEY))

    def show(self, obj: dict[str, Any]) -> dict[str, Any]:
        return to_events_v1(obj)

    def field_selector(self, text: str | None) -> FieldSelector:
        """Field selectors accept the new names (``regarding.*``, ``reportingController``) too."""
        text = re.sub(r"(^|,)\s*regarding\.", r"\1involvedObject.", text or "")
        text = re.sub(r"(^|,)\s*reportingController(?=\s*[!=])", r"\1reportingComponent", text)
        return FieldSelector(text, _KEY)

    def table(
        self, objects: list[dict[str, Any]], resource_version: str, include: str, version: str
    ) -> dict[str, Any]:
        """The core v1 Event's columns; whole objects (``includeObject=Object``) as events.k8s.io/v1."""
        table = to_table(self.stored, objects, resource_version, include, version)
        if include == "Object":
            for row, obj in zip(table["rows"], objects, strict=True):
                row["object"] = self.show(obj)
        return table


def _validate_new(body: dict[str, Any]) -> None:
    name = str(dig(body, "metadata", "name") or "")
    for field in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if _empty(body.get(field)):
            raise invalid("Event", name, field, "Required value", GROUP)
    if body.get("type") not in ("Normal", "Warning"):
        raise invalid(
            "Event",
            name,
            "type",
            f'Unsupported value: "{body.get("type")}": supported values: "Normal", "Warning"',
            GROUP,
        )


async def handle(
    request: web.Request, state: State, authorizer: Authorizer, target: Target
) -> web.StreamResponse:
    """Serve one request under ``/apis/events.k8s.io/v1`` (authorized by ``authorizer`` first)."""
    method, query = request.method, request.query
    ns, name = target.namespace or "", target.name
    watching = target.watch_prefix or (method == "GET" and bool_param(query, "watch"))
    authorizer.check(request_attributes(request, target, watching))
    view = EventsView(state, target.rt)
    core = view.stored
    dry_run = dry_run_param(method, query.getall("dryRun", []))
    if target.subresource is not None:
        raise method_not_allowed(method)
    if method == "GET":
        if watching:
            return await watch(request, state, target, view)
        if name:
            return get_object(request, state, target, view)
        return list_objects(request, state, target, view)
    if method == "POST" and name is None and target.namespace is not None:
        body = await read_body(request)
        check_kind(target.rt, body)
        _validate_new(body)
        created = verbs.create(state, core, ns, to_core_v1(body), dry_run)
        return json_response(to_events_v1(created), 201)
    if method == "PUT" and name:
        body = await read_body(request)
        check_kind(target.rt, body)
        return json_response(
            to_events_v1(verbs.update(state, core, ns, name, to_core_v1(body), None, dry_run))
        )
    if method == "PATCH" and name:
        return json_response(
            to_events_v1(_patch(state, core, ns, name, request, await request.read(), dry_run))
        )
    if method == "DELETE":
        raw = await request.read()
        opts = deletion.parse_options(query, decode_body(raw, "application/json") if raw.strip() else None)
        opts.dry_run = opts.dry_run or dry_run
        if name:
            gone = deletion.delete(state, core, ns, name, opts)
            return json_response(to_events_v1(gone) if gone.get("kind") != "Status" else gone)
        return delete_collection(request, state, view, target.namespace, opts)
    raise method_not_allowed(method)


def _patch(
    state: State, core: ResourceType, ns: str, name: str, request: web.Request, raw: bytes, dry_run: bool
) -> dict[str, Any]:
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media not in PATCH_TYPES:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(PATCH_TYPES)}",
        )
    stored = state.store.get(_KEY, ns, name)
    if stored is None:
        raise not_found("events", name, GROUP)
    shown, doc = to_events_v1(stored), decode_body(raw, "application/json")
    if media == "application/json-patch+json":
        new = json_patch(shown, doc)
    elif not isinstance(doc, dict):
        raise bad_request("a merge patch must be a JSON object")
    else:
        new = (
            merge_patch(shown, doc)
            if media == "application/merge-patch+json"
            else strategic_merge_patch(shown, doc)
        )
    if not isinstance(new, dict):
        raise bad_request("the patched object is not a JSON object")
    return verbs.update(state, core, ns, name, to_core_v1(new), None, dry_run)


def _last_written(event: dict[str, Any]) -> float | None:
    stamps = [parse_time(event.get(f)) for f in _TIMES]
    stamps.append(parse_time(dig(event, "series", "lastObservedTime")))
    stamps.append(parse_time(dig(event, "metadata", "creationTimestamp")))
    known = [s for s in stamps if s is not None]
    return max(known) if known else None


def expire_events(state: State, ttl: float = EVENT_TTL, now: float | None = None) -> int:
    """Remove Events last written more than ``ttl`` seconds before ``now``; returns how many."""
    wall = time.time() if now is None else now
    expired = 0
    for obj in list(state.store.scan(_KEY)):
        last = _last_written(obj)
        if last is not None and wall - last > ttl:
            md = meta(obj)
            with contextlib.suppress(ApiError):
                state.store.delete(_KEY, str(md.get("namespace") or ""), str(md.get("name") or ""))
                expired += 1
    return expired
