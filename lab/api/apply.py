"""Server-side apply (``PATCH`` with ``application/apply-patch+yaml``), a faithful subset.

The applied configuration (YAML or JSON; ``apiVersion`` and ``kind`` required, ``null``
values dropped) is merged into the live object by the structured-merge rules of
:mod:`lab.api.managed_fields`: maps merge field by field, associative lists merge
element by element on their keys, ``finalizers`` merge as a set, every other list and
every scalar is replaced. Ownership:

* The manager (``fieldManager``, required) owns exactly the fields it applied; fields
  it applied before and no longer applies are removed from the object unless another
  manager owns them (or, for a list element, any field inside it).
* A field it applies that another manager owns with a *different* value is a conflict:
  409 ``Apply failed with N conflict(s): ...`` listing each manager and path, like the
  real server, unless ``force=true``, which takes the fields from their owners. The same
  value makes the field shared.
* An object without ``managedFields`` is first given to ``before-first-apply`` (Update),
  as the real server does; an absent object is created with the applied configuration.

Not covered: other list types of the OpenAPI schema (lists are keyed as the lab knows
them), ``x-kubernetes-map-type: atomic`` structs, element order of merged lists (live
order, new elements appended), version conversion, and the ``Apply`` status subresource
owning anything but ``status``.
"""

from __future__ import annotations

from typing import Any

from lab.api.fields import as_str, clone, meta, now_rfc3339
from lab.api.managed_fields import (
    MISSING,
    SET_LISTS,
    Entry,
    Path,
    field_set,
    get_value,
    list_keys,
    path_text,
    read_entries,
    write_entries,
)
from lab.api.resources import ResourceType
from lab.api.status import ApiError, bad_request

__all__ = ["APPLY_PATCH", "apply", "check_applied"]

APPLY_PATCH = "application/apply-patch+yaml"


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def check_applied(rt: ResourceType, doc: Any, namespace: str, name: str, manager: str) -> dict[str, Any]:
    """The applied configuration, checked (400 naming the problem and the fix)."""
    if not manager:
        raise bad_request("fieldManager is required for apply requests: add ?fieldManager=NAME")
    if not isinstance(doc, dict):
        raise bad_request("an applied configuration must be an object (YAML or JSON)")
    for field in ("apiVersion", "kind"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise bad_request(f"{field} must be set in an applied configuration")
    if (doc["apiVersion"], doc["kind"]) != (rt.api_version, rt.kind):
        raise bad_request(
            f"the applied configuration is {doc['apiVersion']} {doc['kind']}, "
            f"but this URL serves {rt.api_version} {rt.kind}"
        )
    applied: dict[str, Any] = _strip_nulls(doc)
    md = applied.setdefault("metadata", {})
    if not isinstance(md, dict):
        raise bad_request("metadata must be an object")
    if md.setdefault("name", name) != name:
        raise bad_request(
            f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
        )
    if not rt.namespaced:
        md.pop("namespace", None)
    elif md.setdefault("namespace", namespace) != namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    md.pop("managedFields", None)
    return applied


def _same_element(keys: tuple[str, ...], a: Any, b: Any) -> bool:
    return (
        isinstance(a, dict)
        and isinstance(b, dict)
        and all(
            a.get(k, "TCP" if k == "protocol" else None) == b.get(k, "TCP" if k == "protocol" else None)
            for k in keys
        )
    )


def _merge(live: Any, applied: Any, name: str = "") -> Any:
    if isinstance(live, dict) and isinstance(applied, dict):
        out = dict(live)
        for key, value in applied.items():
            out[key] = _merge(live[key], value, key) if key in live else clone(value)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        keys = list_keys(name, [*live, *applied])
        if keys and all(isinstance(i, dict) for i in [*live, *applied]):
            result = [clone(i) for i in live]
            for item in applied:
                index = next((n for n, cur in enumerate(result) if _same_element(keys, cur, item)), None)
                if index is None:
                    result.append(clone(item))
                else:
                    result[index] = _merge(result[index], item)
            return result
        if name in SET_LISTS:
            return [*clone(live), *(clone(v) for v in applied if v not in live)]
    return clone(applied)


def _remove(obj: dict[str, Any], path: Path, emptied: bool = True) -> None:
    """Remove the field, set member or list element at ``path`` (nothing when it is gone); a map
    or list left empty goes too (the structured merge turns it into null)."""
    target = path[:-1] if path[-1] == "." else path
    parent = get_value(obj, target[:-1])
    last = target[-1]
    if last.startswith("f:") and isinstance(parent, dict) and last[2:] in parent:
        del parent[last[2:]]
    elif isinstance(parent, list) and (element := get_value(parent, (last,))) is not MISSING:
        parent[:] = [item for item in parent if item is not element]
    else:
        return
    if emptied and not parent and len(target) > 1:
        _remove(obj, target[:-1], emptied=False)


def _conflict(conflicts: list[tuple[Entry, Path]]) -> ApiError:
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}", "field": path_text(p)}
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {path_text(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(path_text(path))
        lines = []
        for manager in sorted(by_manager):
            lines.append(f"conflicts with {manager}:")
            lines.extend(f"- {p}" for p in sorted(by_manager[manager]))
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, message, "Conflict", {"causes": causes})


def apply(
    rt: ResourceType,
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool = False,
    subresource: str | None = None,
) -> dict[str, Any]:
    """The object after ``manager`` applied ``applied`` (checked) over ``live`` (None: absent),
    with its ``managedFields``; 409 on conflicts unless ``force``."""
    now = now_rfc3339()
    owned = field_set(rt, applied, subresource)
    mine = Entry(manager, "Apply", as_str(applied.get("apiVersion")), subresource or "", now, owned)
    if live is None:
        created = clone(applied)
        meta(created)["managedFields"] = write_entries([mine])
        return created
    entries = read_entries(live)
    if not entries:
        before = field_set(rt, live, subresource)
        entries = [Entry("before-first-apply", "Update", rt.api_version, subresource or "", now, before)]
    previous = next((e for e in entries if e.same_owner(mine)), None)
    others = [e for e in entries if e is not previous]
    conflicts = [
        (entry, path)
        for entry in others
        for path in sorted(owned & entry.paths)
        if path[-1] != "."
        and (value := get_value(live, path)) is not MISSING
        and value != get_value(applied, path)
    ]
    if conflicts and not force:
        raise _conflict(conflicts)
    for entry, path in conflicts:
        entry.paths.discard(path)
        entry.time = now
    obj = clone(live)
    others_own = set().union(*(e.paths for e in others)) if others else set()
    dropped = (previous.paths if previous else set()) - owned
    for path in sorted(dropped, key=lambda p: (len(p) - (p[-1] == "."), p)):  # elements before fields
        base = path[:-1] if path[-1] == "." else path
        if not any(q[: len(base)] == base for q in others_own):
            _remove(obj, path)
    merged = _merge(obj, applied)
    unchanged = _without_managed(merged) == _without_managed(live)
    if previous is not None and previous.paths == owned and unchanged:
        mine.time = previous.time
    result = []
    for entry in entries:
        if entry is previous:
            result.append(mine)
            continue
        kept = {p for p in entry.paths if get_value(merged, p) is not MISSING}
        if kept != entry.paths:
            entry.paths, entry.time = kept, now
        result.append(entry)
    if previous is None:
        result.append(mine)
    meta(merged)["managedFields"] = write_entries(result)
    if unchanged and _owners(read_entries(merged)) == _owners(read_entries(live)):
        meta(merged)["managedFields"] = clone(meta(live).get("managedFields"))
    if not meta(merged)["managedFields"]:
        meta(merged).pop("managedFields")
    return merged


def _without_managed(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {k: v for k, v in meta(obj).items() if k != "managedFields"}}


def _owners(entries: list[Entry]) -> list[tuple[str, str, str, frozenset[Path]]]:
    return [(e.manager, e.operation, e.subresource, frozenset(e.paths)) for e in entries]
