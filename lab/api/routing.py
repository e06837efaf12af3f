"""Resource URLs: ``/api/v1/...`` and ``/apis/{group}/{version}/...`` into a :class:`Target`.

Shapes: ``{plural}``, ``{plural}/{name}[/{sub}]`` and
``namespaces/{ns}/{plural}[/{name}[/{sub}]]``, optionally after a legacy ``watch/``.
``namespaces/{name}/status`` is the namespace's own subresource. Anything the registry
does not serve is a 404 like the real server's; a pod's streaming subresources
(``exec``, ``attach``, ``portforward``) are refused as unsupported (see
:func:`lab.api.subresources.unsupported_streaming`); ``services/proxy`` and ``pods/proxy``
never reach :func:`parse_path` (:mod:`lab.api.service_proxy`). :func:`openapi_route` answers
``/openapi/v2`` and ``/openapi/v3`` (:mod:`lab.api.openapi`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.api import openapi
from lab.api.openapi_proto import V2_PROTOBUF, encode_document
from lab.api.resources import Registry, ResourceType
from lab.api.status import ApiError
from lab.api.subresources import STREAMING, unsupported_streaming

if TYPE_CHECKING:
    from lab.api.state import State

__all__ = ["Target", "openapi_route", "parse_path"]


@dataclass(frozen=True)
class Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_prefix: bool = False


def _missing() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", "NotFound")


def parse_path(path: str, registry: Registry) -> Target:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _missing()
    watch = bool(rest) and rest[0] == "watch"
    if watch:
        rest = rest[1:]
    if not rest:
        raise _missing()
    namespace: str | None = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (group == "" and len(rest) == 3 and rest[2] == "status")
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise _missing()
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    rt = registry.lookup(group, version, plural)
    if rt is None or (namespace is not None and not rt.namespaced):
        raise _missing()
    if rt.namespaced and namespace is None and name is not None:
        raise _missing()
    if sub is not None and rt.key == "pods" and name is not None and sub in STREAMING:
        raise unsupported_streaming(sub, name)
    if sub is not None and not rt.has(sub):
        raise _missing()
    return Target(rt, namespace, name, sub, watch)


def openapi_route(path: str, accept: str, state: State) -> web.Response | None:
    """The answer to ``GET /openapi/v2`` and ``/openapi/v3[/api/v1 | /apis/{group}/{version}]``;
    None for a path outside ``/openapi``, 404 for one inside it that is not served.

    ``/openapi/v2`` answers protobuf when the client asks for it (kubectl always does,
    :mod:`lab.api.openapi_proto`) and JSON otherwise.
    """
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] != "openapi":
        return None
    doc: dict[str, Any] | None = None
    if parts == ["openapi", "v2"]:
        doc = openapi.openapi_v2(state)
        if "protobuf" in accept:
            return web.Response(body=encode_document(doc), headers={"Content-Type": V2_PROTOBUF})
    elif parts == ["openapi", "v3"]:
        doc = openapi.openapi_v3_root(state)
    elif len(parts) == 4 and parts[1:3] == ["v3", "api"]:
        doc = openapi.openapi_v3_document(state, "", parts[3])
    elif len(parts) == 5 and parts[1:3] == ["v3", "apis"]:
        doc = openapi.openapi_v3_document(state, parts[3], parts[4])
    if doc is None:
        raise _missing()
    return web.Response(text=json.dumps(doc), content_type="application/json")
