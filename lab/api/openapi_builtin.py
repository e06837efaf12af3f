"""OpenAPI schemas of the built-in kinds the lab serves, generated from a compact table.

Not the whole upstream specification: every field of the objects the lab's clients
write (pod spec, containers, workloads, services, claims, metadata) with its type, and
a free-form ``object`` where the lab keeps a structure without reading into it (probes,
affinity, security contexts, most statuses), so a client validating against these
schemas (kubectl 1.20's ``--validate``) accepts any real manifest. Lists Kubernetes
merges by key carry ``x-kubernetes-patch-merge-key``/``x-kubernetes-patch-strategy``,
which kubectl reads to compute strategic merge patches.

The table is :data:`lab.api.openapi_table.TABLE`. A field is
``<name>: <type>[!][@key] <description>``, the type ``string``, ``integer``, ``boolean``,
``number``, ``object`` (free-form), ``[T]`` a list, ``{T}`` a map with string keys, or
the name of another definition; ``!`` marks a required field, ``@key`` a list merged
by ``key``. Definitions are named as upstream (``io.k8s.api.core.v1.Pod``); a name
in the table is its group, ``/``, its short name. A kind the lab serves that the table
does not describe (added to :data:`lab.api.resources.BUILTINS` later) is published as a
free-form object with its group-version-kind, so it is never missing from a document.
"""

from __future__ import annotations

from typing import Any

from lab.api.openapi_table import TABLE
from lab.api.resources import BUILTINS

__all__ = ["BUILTIN_GVK", "META", "builtin_definitions", "definition_name"]

META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_PACKAGES = {
    "": "io.k8s.api.core.v1",
    "core": "io.k8s.api.core.v1",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    "meta": "io.k8s.apimachinery.pkg.apis.meta.v1",
    "intstr": "io.k8s.apimachinery.pkg.util.intstr",
    "resource": "io.k8s.apimachinery.pkg.api.resource",
}


def _package(group: str, version: str = "v1") -> str:
    """Where upstream defines a group's types: ``io.k8s.api.<first label>.<version>``."""
    return _PACKAGES.get(group) or f"io.k8s.api.{group.partition('.')[0]}.{version}"


def _parse(table: str) -> dict[str, tuple[str, dict[str, str]]]:
    out: dict[str, tuple[str, dict[str, str]]] = {}
    fields: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("== "):
            key, _, description = line[3:].partition(": ")
            fields = {}
            out[key] = (description, fields)
        elif line.strip():
            name, _, text = line.partition(": ")
            fields[name] = text
    return out


_TABLE = _parse(TABLE)
_SCALARS = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "number": {"type": "number"},
    "object": {"type": "object"},
    "Time": {"type": "string", "format": "date-time"},
}
_LEAVES: dict[str, dict[str, Any]] = {
    f"{_PACKAGES['intstr']}.IntOrString": {
        "description": "An integer or a string.",
        "type": "string",
        "format": "int-or-string",
    },
    f"{_PACKAGES['resource']}.Quantity": {
        "description": "A fixed-point number: 1.5, 100m, 1Gi.",
        "type": "string",
    },
}
_SHORT = {
    **{key.partition("/")[2]: f"{_package(key.partition('/')[0])}.{key.partition('/')[2]}" for key in _TABLE},
    "IntOrString": f"{_PACKAGES['intstr']}.IntOrString",
    "Quantity": f"{_PACKAGES['resource']}.Quantity",
}
BUILTIN_GVK: dict[str, tuple[str, str, str]] = {
    f"{_package(rt.group, rt.version)}.{rt.kind}": (rt.group, rt.version, rt.kind) for rt in BUILTINS
}


def definition_name(group: str, kind: str, version: str = "v1") -> str:
    """The upstream definition name of a built-in kind (``io.k8s.api.apps.v1.Deployment``)."""
    return f"{_package(group, version)}.{kind}"


def _type(spec: str, ref: str) -> dict[str, Any]:
    if spec.startswith("[") and spec.endswith("]"):
        return {"type": "array", "items": _type(spec[1:-1], ref)}
    if spec.startswith("{") and spec.endswith("}"):
        return {"type": "object", "additionalProperties": _type(spec[1:-1], ref)}
    if spec in _SCALARS:
        return dict(_SCALARS[spec])
    return {"$ref": ref + _SHORT[spec]}


def _field(text: str, ref: str) -> tuple[dict[str, Any], bool]:
    head, _, description = text.partition(" ")
    head, _, merge_key = head.partition("@")
    required = head.endswith("!")
    schema = _type(head.rstrip("!"), ref)
    if merge_key:
        schema["x-kubernetes-patch-merge-key"] = merge_key
        schema["x-kubernetes-patch-strategy"] = "merge"
    if description:
        schema["description"] = description
    return schema, required


def builtin_definitions(ref: str) -> dict[str, dict[str, Any]]:
    """Every built-in definition, references written as ``ref`` + name (``#/definitions/``)."""
    out: dict[str, dict[str, Any]] = {name: dict(schema) for name, schema in _LEAVES.items()}
    for key, (description, fields) in _TABLE.items():
        full = _SHORT[key.partition("/")[2]]
        props: dict[str, Any] = {}
        required: list[str] = []
        gvk = BUILTIN_GVK.get(full)
        if gvk is not None:
            api_version = f"{gvk[0]}/{gvk[1]}" if gvk[0] else gvk[1]
            props["apiVersion"] = {"type": "string", "description": f"APIVersion: {api_version}."}
            props["kind"] = {"type": "string", "description": f"Kind: {gvk[2]}."}
            props["metadata"] = {"$ref": ref + META, "description": "Standard object's metadata."}
        for name, text in fields.items():
            props[name], needed = _field(text, ref)
            if needed:
                required.append(name)
        schema: dict[str, Any] = {"description": description, "type": "object", "properties": props}
        if required:
            schema["required"] = required
        if gvk is not None:
            schema["x-kubernetes-group-version-kind"] = [{"group": gvk[0], "version": gvk[1], "kind": gvk[2]}]
        out[full] = schema
    for full, (group, version, kind) in BUILTIN_GVK.items():
        if full not in out:  # served, not described: any content (clients validate nothing in it)
            out[full] = {
                "description": f"{kind} (served by the lab without a published field list).",
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": kind}],
            }
    return out
