"""Field ownership: ``metadata.managedFields`` as the real API server keeps it (a subset).

A *field set* is a set of paths in FieldsV1 notation: ``f:<field>`` steps into a map,
``k:{"name":"c"}`` into an element of an associative list (its key fields),
``v:<json>`` is a member of a set list and ``.`` the list element itself. Which lists
are associative and by which keys follows the Kubernetes schema for the fields the lab
serves (:data:`LIST_KEYS`: containers, volumes, env by name; container ports by
``containerPort`` + ``protocol`` (default ``TCP``), service ports by ``port`` +
``protocol``; conditions by type, ...); ``finalizers`` is a set; every other list is
atomic (owned as a whole: tolerations, command, args, rules, subjects).

* Create, update and patch record an ``Update`` entry for their manager (``fieldManager``,
  else the User-Agent up to its first ``/``) owning what the request changed; changed
  fields leave other managers (updates never conflict), and fields gone from the object
  leave every manager. A request that changes nothing leaves the entries as they were.
* ``.../status`` writes are recorded with ``subresource: status`` and own only
  ``status``; writes to the main resource never own ``status`` of kinds with that
  subresource. Identity fields (apiVersion, kind, metadata name, namespace, uid,
  resourceVersion, generation, creationTimestamp, managedFields) are never owned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lab.api.fields import as_dict, as_list, as_str, meta, now_rfc3339
from lab.api.resources import ResourceType

__all__ = [
    "LIST_KEYS",
    "MISSING",
    "Entry",
    "Path",
    "field_set",
    "get_value",
    "list_keys",
    "path_text",
    "read_entries",
    "record_update",
    "write_entries",
]

Path = tuple[str, ...]
MISSING: Any = object()
LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "resourceClaims": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
SET_LISTS = frozenset({"finalizers"})
_KEY_DEFAULTS = {"protocol": "TCP"}
_IDENTITY = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"}
)
_IDENTITY |= {"selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}


@dataclass
class Entry:
    """One ``managedFields`` entry: who, how, and the paths it owns."""

    manager: str
    operation: str
    api_version: str
    subresource: str = ""
    time: str = ""
    paths: set[Path] = field(default_factory=set)

    def same_owner(self, other: Entry) -> bool:
        if (self.manager, self.operation, self.subresource) != (
            other.manager,
            other.operation,
            other.subresource,
        ):
            return False
        return self.operation == "Apply" or self.api_version == other.api_version

    def describe(self) -> str:
        """How a conflict names this manager (like the real server)."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        return f"{text} using {self.api_version}" if self.operation == "Update" else text


def list_keys(name: str, items: list[Any]) -> tuple[str, ...] | None:
    """The key fields of the associative list ``name`` (None: atomic or a set)."""
    if name == "ports":
        dicts = [i for i in items if isinstance(i, dict)]
        return (
            ("containerPort", "protocol")
            if any("containerPort" in i for i in dicts)
            else ("port", "protocol")
        )
    return LIST_KEYS.get(name)


def _key_token(keys: tuple[str, ...], item: dict[str, Any]) -> str:
    values = tuple(item.get(k, _KEY_DEFAULTS.get(k)) for k in keys)
    try:
        return _token_of(keys, values)
    except TypeError:  # a key field holding a list or a map: not cacheable
        return _token_of.__wrapped__(keys, values)


@lru_cache(maxsize=4096)
def _token_of(keys: tuple[str, ...], values: tuple[Any, ...]) -> str:
    present = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
    return "k:" + json.dumps(present, sort_keys=True, separators=(",", ":"))


def _keyed(name: str, value: list[Any]) -> tuple[str, ...] | None:
    keys = list_keys(name, value)
    return keys if keys and all(isinstance(i, dict) for i in value) else None


def _paths(value: dict[str, Any], prefix: Path, out: set[Path]) -> None:
    for name, child in value.items():
        path = (*prefix, f"f:{name}")
        if isinstance(child, dict) and child:
            _paths(child, path, out)
        elif isinstance(child, list) and child and (keys := _keyed(name, child)):
            for item in child:
                element = (*path, _key_token(keys, item))
                out.add((*element, "."))
                _paths(item, element, out)
        elif isinstance(child, list) and child and name in SET_LISTS:
            out.update((*path, "v:" + json.dumps(item, separators=(",", ":"))) for item in child)
        else:
            out.add(path)


def _owned_body(rt: ResourceType, obj: dict[str, Any], subresource: str | None) -> dict[str, Any]:
    """The part of ``obj`` a write to ``rt`` (or its ``subresource``) can own."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    if subresource == "status":
        body = {"status": body["status"]} if isinstance(body.get("status"), dict) else {}
    elif subresource == "scale":
        spec = body.get("spec")
        body = (
            {"spec": {"replicas": spec["replicas"]}} if isinstance(spec, dict) and "replicas" in spec else {}
        )
    elif rt.has("status"):
        body.pop("status", None)
    md = body.get("metadata")
    if isinstance(md, dict):
        md = {k: v for k, v in md.items() if k not in _IDENTITY}
        if md:
            body["metadata"] = md
        else:
            body.pop("metadata")
    return body


def field_set(rt: ResourceType, obj: dict[str, Any], subresource: str | None = None) -> set[Path]:
    """The paths ``obj`` sets, as a write to ``rt`` (or its ``subresource``) would own them."""
    out: set[Path] = set()
    _paths(_owned_body(rt, obj, subresource), (), out)
    return out


def _changed(old: Any, new: dict[str, Any], prefix: Path, out: set[Path]) -> None:
    """The paths of ``new`` (as :func:`field_set` finds them) whose value in ``old`` (the
    counterpart of ``new``, or :data:`MISSING`) differs; equal subtrees are skipped whole."""
    for name, child in new.items():
        before = old.get(name, MISSING) if isinstance(old, dict) else MISSING
        if before == child:
            continue
        path = (*prefix, f"f:{name}")
        if isinstance(child, dict) and child:
            _changed(before, child, path, out)
        elif isinstance(child, list) and child and (keys := _keyed(name, child)):
            olds: dict[str, Any] = {}
            for item in before if isinstance(before, list) else ():
                if isinstance(item, dict):
                    olds.setdefault(_key_token(keys, item), item)
            for item in child:
                token = _key_token(keys, item)
                was = olds.get(token, MISSING)
                if was != item:
                    out.add((*path, token, "."))
                    _changed(was, item, (*path, token), out)
        elif isinstance(child, list) and child and name in SET_LISTS:
            members = before if isinstance(before, list) else []
            out.update(
                (*path, "v:" + json.dumps(item, separators=(",", ":")))
                for item in child
                if item not in members
            )
        else:
            out.add(path)


@lru_cache(maxsize=4096)
def _parse_token(token: str) -> tuple[str, Any]:
    """(``k`` or ``v``, the key fields as pairs or the member) of a list step; ("", None) when
    it is neither or its JSON is unreadable (then it matches nothing). Cached: the same few
    tokens are resolved on every write."""
    kind, _, rest = token.partition(":")
    try:
        wanted = json.loads(rest)
    except ValueError:
        return "", None
    if kind == "k":
        return (kind, tuple(wanted.items())) if isinstance(wanted, dict) else ("", None)
    return (kind, wanted) if kind == "v" else ("", None)


def _element(items: list[Any], token: str) -> Any:
    kind, wanted = _parse_token(token)
    if kind == "v":
        for item in items:
            if item == wanted:
                return item
    elif kind == "k":
        for item in items:
            if isinstance(item, dict) and all(item.get(k, _KEY_DEFAULTS.get(k)) == v for k, v in wanted):
                return item
    return MISSING


def get_value(obj: Any, path: Path) -> Any:
    """The value at ``path`` in ``obj`` (an element for ``.``), or :data:`MISSING`."""
    node = obj
    for step in path:
        if step == ".":
            return node
        if step.startswith("f:"):
            if not isinstance(node, dict) or step[2:] not in node:
                return MISSING
            node = node[step[2:]]
        elif isinstance(node, list):
            node = _element(node, step)
            if node is MISSING:
                return MISSING
        else:
            return MISSING
    return node


def path_text(path: Path) -> str:
    """``.spec.template.spec.containers[name="c"].image``, as conflicts print paths."""
    text = ""
    for token in path:
        if token.startswith("f:"):
            text += "." + token[2:]
        elif token.startswith("k:"):
            key = json.loads(token[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
        elif token.startswith("v:"):
            text += f"[={token[2:]}]"
    return text


def _to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for token in path:
            node = node.setdefault(token, {})
    return tree


def _from_fields_v1(tree: Any, prefix: Path, out: set[Path]) -> None:
    for token, child in as_dict(tree).items():
        path = (*prefix, token)
        if isinstance(child, dict) and child:
            _from_fields_v1(child, path, out)
        else:
            out.add(path)


def _header(raw: Any) -> Entry | None:
    """A ``managedFields`` item's manager, operation, version, subresource and time, without
    its paths (None: not an Apply or Update, skipped as malformed)."""
    item = as_dict(raw)
    operation = as_str(item.get("operation"))
    if operation not in ("Apply", "Update"):
        return None
    return Entry(
        as_str(item.get("manager")),
        operation,
        as_str(item.get("apiVersion")),
        as_str(item.get("subresource")),
        as_str(item.get("time")),
    )


def read_entries(obj: dict[str, Any]) -> list[Entry]:
    """The object's ``managedFields`` (malformed entries are skipped)."""
    entries = []
    for item in as_list(meta(obj).get("managedFields")):
        entry = _header(item)
        if entry is not None:
            _from_fields_v1(as_dict(item).get("fieldsV1"), (), entry.paths)
            entries.append(entry)
    return entries


def write_entries(entries: list[Entry]) -> list[dict[str, Any]]:
    """``managedFields`` for ``entries`` (entries owning nothing are dropped)."""
    out = []
    for entry in entries:
        if not entry.paths:
            continue
        raw: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
            "time": entry.time or now_rfc3339(),
            "fieldsType": "FieldsV1",
            "fieldsV1": _to_fields_v1(entry.paths),
        }
        if entry.subresource:
            raw["subresource"] = entry.subresource
        out.append(raw)
    return out


_UNOWNED_META = frozenset({"managedFields", "resourceVersion", "generation"})


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without what a write never changes by itself (managedFields, resourceVersion,
    generation), for comparing: a shallow view, nothing is copied."""
    md = obj.get("metadata")
    if not isinstance(md, dict) or _UNOWNED_META.isdisjoint(md):
        return obj
    return {**obj, "metadata": {k: v for k, v in md.items() if k not in _UNOWNED_META}}


def _changed_tops(old: dict[str, Any], new: dict[str, Any]) -> frozenset[str]:
    """The ``f:<key>`` of each top-level field whose value differs (empty: nothing changed)."""
    before, after = _content(old), _content(new)
    return frozenset(
        f"f:{key}"
        for key in before.keys() | after.keys()
        if before.get(key, MISSING) != after.get(key, MISSING)
    )


def _present(tree: Any, node: Any, before: Any, prefix: Path, out: set[Path]) -> bool:
    """Add the paths of the FieldsV1 ``tree`` that still lead somewhere in ``node`` to ``out``
    (as :func:`get_value` resolves them, each step once; under a value equal to ``before``, its
    counterpart in the old object, all of them); False when some do not."""
    if before is not MISSING and before == node:
        _from_fields_v1(tree, prefix, out)
        return True
    complete = True
    for token, child in as_dict(tree).items():
        path = (*prefix, token)
        if token == ".":  # noqa: S105 - a FieldsV1 token, not a secret
            out.add(path)
            continue
        if token.startswith("f:"):
            value = node.get(token[2:], MISSING) if isinstance(node, dict) else MISSING
            was = before.get(token[2:], MISSING) if isinstance(before, dict) else MISSING
        else:
            value = _element(node, token) if isinstance(node, list) else MISSING
            was = _element(before, token) if isinstance(before, list) else MISSING
        if value is MISSING:
            complete = False
        elif isinstance(child, dict) and child:
            complete = _present(child, value, was, path, out) and complete
        else:
            out.add(path)
    return complete


def record_update(
    rt: ResourceType,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    subresource: str | None = None,
) -> list[dict[str, Any]]:
    """``managedFields`` for ``new`` written over ``old`` (None: a create) by ``manager``.

    Only the top-level fields whose value changed are looked at: an entry owning nothing
    under them is kept as it was, unread (a status write leaves the spec's owners alone)."""
    mine = Entry(manager or "unknown", "Update", rt.api_version, subresource or "", now_rfc3339())
    if old is None:
        mine.paths = field_set(rt, new, subresource)
        return write_entries([mine])
    previous = as_list(meta(old).get("managedFields"))
    tops = _changed_tops(old, new)
    if not tops:
        return previous
    changed: set[Path] = set()
    _changed(
        old, _owned_body(rt, {k: v for k, v in new.items() if f"f:{k}" in tops}, subresource), (), changed
    )
    result: list[dict[str, Any]] = []
    found = False
    for raw in previous:
        entry = _header(raw)
        if entry is None:
            continue
        fields_v1 = as_dict(raw).get("fieldsV1")
        ours = not found and entry.same_owner(mine)
        if not ours and isinstance(fields_v1, dict) and tops.isdisjoint(fields_v1):
            result.append(raw)  # owns nothing that changed: as it was
            continue
        complete = _present(fields_v1, new, old, (), entry.paths)
        if ours:
            found = True
            unmodified = complete and changed <= entry.paths
            entry.paths |= changed
            entry.time = mine.time if changed or not entry.time else entry.time
        else:
            unmodified = complete and entry.paths.isdisjoint(changed)
            entry.paths -= changed
            entry.time = entry.time if unmodified else mine.time
        if unmodified:
            result.append({**raw, "time": entry.time} if ours else raw)
        else:
            result.extend(write_entries([entry]))
    if not found:
        mine.paths = changed
        result.extend(write_entries([mine]))
    return result
