"""The three PATCH formats: JSON merge patch, strategic merge patch, JSON patch.

* ``application/merge-patch+json`` (RFC 7386): maps merge, ``null`` deletes, lists replace.
* ``application/strategic-merge-patch+json``: like merge patch, but lists with a merge
  key merge element by element (containers, volumes, env by ``name``; container ports
  by ``containerPort``, service ports by ``port``; conditions and node addresses by
  ``type``; volumeMounts by ``mountPath``; ownerReferences by ``uid``) and
  ``finalizers`` merge as a set. Directives ``$patch: replace|delete|merge``,
  ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` are honoured,
  ``$setElementOrder/<field>`` is accepted and ignored. Custom resources refuse it (415).
* ``application/json-patch+json`` (RFC 6902): add, remove, replace, move, copy, test.

Malformed patches raise 400; patches that cannot apply (missing path, failed test) 422.
"""

from __future__ import annotations

import re
from typing import Any

from lab.api.fields import clone
from lab.api.status import ApiError, bad_request

__all__ = ["PATCH_TYPES", "json_patch", "merge_patch", "strategic_merge_patch"]

PATCH_TYPES = (
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
)

_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
_SET_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 merge of ``patch`` onto ``target`` (neither is modified)."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        dicts = [i for i in items if isinstance(i, dict)]
        return "containerPort" if any("containerPort" in i for i in dicts) else "port"
    return _MERGE_KEYS.get(field)


def _strip(value: Any) -> Any:
    """``value`` without patch directives (for elements added whole)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge of ``patch`` onto ``target``; returns None for ``$patch: delete``."""
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch directive {directive!r}")
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if field in _SET_LISTS:
        merged = list(current) if isinstance(current, list) else []
        merged.extend(v for v in patch if v not in merged)
        return merged
    key = _merge_key(field, patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return _strip(patch)
    merged = list(current) if isinstance(current, list) else []
    for item in patch:
        wanted = item.get(key)
        index = next(
            (n for n, cur in enumerate(merged) if isinstance(cur, dict) and cur.get(key) == wanted),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(_strip(item))
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, message, "Invalid")


def _index(part: str) -> int | None:
    """A JSON-pointer array index (ASCII digits only), or None."""
    return int(part) if re.fullmatch(r"0|[1-9][0-9]{0,8}", part) else None


def _parent(doc: Any, parts: list[str], op: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and (i := _index(part)) is not None and i < len(node):
            node = node[i]
        else:
            raise _unprocessable(
                f"jsonpatch {op} operation does not apply: doc is missing path: /{'/'.join(parts)}"
            )
    return node, parts[-1]


def _get(doc: Any, parts: list[str], op: str) -> Any:
    if not parts:
        return doc
    node, last = _parent(doc, parts, op)
    if isinstance(node, dict) and last in node:
        return node[last]
    if isinstance(node, list) and (i := _index(last)) is not None and i < len(node):
        return node[i]
    raise _unprocessable(f"jsonpatch {op} operation does not apply: doc is missing path: /{'/'.join(parts)}")


def _remove(doc: Any, parts: list[str], op: str) -> Any:
    value = _get(doc, parts, op)
    node, last = _parent(doc, parts, op)
    if isinstance(node, dict):
        del node[last]
    else:
        del node[_index(last) or 0]
    return value


def _add(doc: Any, parts: list[str], value: Any, op: str) -> Any:
    if not parts:
        return value
    node, last = _parent(doc, parts, op)
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list):
        if last == "-":
            node.append(value)
        elif (i := _index(last)) is not None and i <= len(node):
            node.insert(i, value)
        else:
            raise _unprocessable(f"jsonpatch {op} operation does not apply: index {last} out of range")
    else:
        raise _unprocessable(
            f"jsonpatch {op} operation does not apply: parent of /{'/'.join(parts)} is not a container"
        )
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """Apply RFC 6902 ``operations`` to a copy of ``target``."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    doc = clone(target)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
            raise bad_request(f"invalid json patch operation: {operation!r}")
        op = operation["op"]
        parts = _pointer(operation.get("path"))
        if op in ("add", "replace", "test") and "value" not in operation:
            raise bad_request(f"json patch {op} operation has no value")
        if op == "add":
            doc = _add(doc, parts, clone(operation["value"]), op)
        elif op == "remove":
            _remove(doc, parts, op)
        elif op == "replace":
            _get(doc, parts, op)
            if parts:
                _remove(doc, parts, op)
            doc = _add(doc, parts, clone(operation["value"]), op)
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            value = _remove(doc, source, op) if op == "move" else clone(_get(doc, source, op))
            doc = _add(doc, parts, value, op)
        elif op == "test":
            if _get(doc, parts, op) != operation["value"]:
                raise _unprocessable(f"testing value /{'/'.join(parts)} failed")
        else:
            raise bad_request(f"unknown json patch operation {op!r}")
    return doc
