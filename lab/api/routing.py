"""Resource URLs: ``/api/v1/...`` and ``/apis/{group}/{version}/...`` into a :class:`Target`.

Shapes: ``{plural}``, ``{plural}/{name}[/{sub}]`` and
``namespaces/{ns}/{plural}[/{name}[/{sub}]]``, optionally after a legacy ``watch/``.
``namespaces/{name}/status`` is the namespace's own subresource. Anything the registry
does not serve is a 404 like the real server's.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.api.resources import Registry, ResourceType
from lab.api.status import ApiError

__all__ = ["Target", "parse_path"]


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
    if sub is not None and not rt.has(sub):
        raise _missing()
    return Target(rt, namespace, name, sub, watch)
