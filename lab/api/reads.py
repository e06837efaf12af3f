"""GET of one object and of collections (lists), with Table and metadata-only answers.

Lists filter by ``labelSelector`` and ``fieldSelector``, page with ``limit`` /
``continue`` (a token naming the last key served; objects are in namespace/name
order; a page with more after it tells ``remainingItemCount`` unless a selector was
given, as the real server omits it then), and carry ``metadata.resourceVersion`` to
start a watch from. A list under a
namespace that does not exist is empty, as on the real server. Both take an optional
:class:`~lab.api.views.View` for a resource served from another type's storage.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from common.config import boolean
from lab.api.fields import meta
from lab.api.routing import Target
from lab.api.state import State
from lab.api.status import bad_request, not_found
from lab.api.tables import negotiate, partial_metadata
from lab.api.views import View, present

__all__ = ["bool_param", "get_object", "int_param", "json_response", "list_objects", "present"]


class _EncodedCache:
    """Each stored object serialised once per resourceVersion (lists re-send mostly unchanged objects).

    Keyed by ``(uid, resourceVersion, apiVersion)``; emptied when it outgrows ``limit`` entries.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._data: dict[tuple[str, str, str], bytes] = {}

    def encode(self, obj: dict[str, Any]) -> bytes:
        md = meta(obj)
        key = (str(md.get("uid", "")), str(md.get("resourceVersion", "")), str(obj.get("apiVersion", "")))
        if not key[0] or not key[1]:
            return json.dumps(obj, separators=(",", ":")).encode()
        found = self._data.get(key)
        if found is None:
            if len(self._data) >= self.limit:
                self._data.clear()
            found = self._data[key] = json.dumps(obj, separators=(",", ":")).encode()
        return found


_encoded = _EncodedCache()


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


def int_param(query: Any, name: str, default: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise bad_request(f"{name} must be an integer, got {raw[:40]!r}") from exc


#: What the Kubernetes API server accepts for a boolean query parameter (Go's strconv.ParseBool).
_GO_BOOLEANS = frozenset({"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"})


def bool_param(query: Any, name: str, default: bool = False) -> bool:
    """A boolean query parameter (absent or empty: ``default``); 400 when Kubernetes would refuse it.

    The API server parses these with Go's ``strconv.ParseBool``, so ``yes`` or ``on`` are
    refused here too, although the harness's own configuration reader accepts them.
    """
    value = query.get(name)
    if value not in (None, "") and value not in _GO_BOOLEANS:
        raise bad_request(f"{name}: {value!r} is not a boolean: use true or false")
    return boolean(value, default=default, name=name)


def _include(request: web.Request) -> str:
    include = request.query.get("includeObject", "Metadata")
    if include not in ("Metadata", "Object", "None"):
        raise bad_request(f"includeObject must be None, Metadata or Object, got {include!r}")
    return include


def get_object(request: web.Request, state: State, target: Target, view: View | None = None) -> web.Response:
    """GET of one object (``view``: how it is stored and shown; by default ``target.rt`` as stored)."""
    view = View(target.rt) if view is None else view
    rt, name = view.rt, target.name or ""
    obj = state.store.get(view.key, target.namespace or "", name)
    if obj is None:
        raise not_found(rt.plural, name, rt.group)
    wanted, version = negotiate(request.headers.get("Accept", ""))
    if wanted == "Table":
        rv = str(meta(obj).get("resourceVersion", ""))
        return json_response(view.table([obj], rv, _include(request), version))
    if wanted == "PartialObjectMetadata":
        return json_response(partial_metadata(obj, version))
    return json_response(view.show(obj))


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        start = json.loads(base64.urlsafe_b64decode(token.encode() + b"==").decode())["start"]
        if not (isinstance(start, list) and len(start) == 2 and all(isinstance(s, str) for s in start)):
            raise ValueError(start)
        return start[0], start[1]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise bad_request("continue key is not valid") from exc


def list_objects(
    request: web.Request, state: State, target: Target, view: View | None = None
) -> web.Response:
    """GET of a collection (``view``: how it is stored and shown; by default ``target.rt`` as stored)."""
    view = View(target.rt) if view is None else view
    rt = view.rt
    labels, fields = view.selectors(request.query)
    limit = int_param(request.query, "limit", 0) or 0
    if limit < 0:
        raise bad_request("limit must not be negative")
    token = request.query.get("continue")
    after = _decode_continue(token) if token else None
    items: list[dict[str, Any]] = []
    list_meta: dict[str, Any] = {"resourceVersion": str(state.store.rv)}
    selected = bool(request.query.get("labelSelector") or request.query.get("fieldSelector"))
    objects = state.store.scan(view.key, target.namespace)
    for obj in objects:
        md = meta(obj)
        ident = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        if after is not None and ident <= after:
            continue
        if not labels.matches(md.get("labels")) or not fields.matches(obj):
            continue
        if limit and len(items) == limit:
            last = meta(items[-1])
            start = [str(last.get("namespace") or ""), str(last.get("name") or "")]
            list_meta["continue"] = (
                base64.urlsafe_b64encode(json.dumps({"start": start}).encode()).decode().rstrip("=")
            )
            if not selected:
                list_meta["remainingItemCount"] = 1 + sum(1 for _ in objects)
            break
        # Stored objects, not copies: the response is serialised before this handler yields.
        items.append(obj)
    wanted, version = negotiate(request.headers.get("Accept", ""))
    if wanted == "Table":
        table = view.table(items, list_meta["resourceVersion"], _include(request), version)
        table["metadata"] = list_meta
        return json_response(table)
    if wanted in ("PartialObjectMetadataList", "PartialObjectMetadata"):
        return json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{version}",
                "metadata": list_meta,
                "items": [partial_metadata(o, version) for o in items],
            }
        )
    head = json.dumps(
        {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": list_meta},
        separators=(",", ":"),
    )
    body = (
        head[:-1].encode() + b',"items":[' + b",".join(_encoded.encode(view.show(o)) for o in items) + b"]}"
    )
    return web.Response(body=body, content_type="application/json")
