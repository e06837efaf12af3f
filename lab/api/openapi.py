"""The OpenAPI documents kubectl reads: ``/openapi/v2`` and ``/openapi/v3``.

* **v2** (Swagger 2.0; kubectl's ``apply``, ``explain`` before 1.27 and its client-side
  ``--validate`` of 1.20 read it, as protobuf: :mod:`lab.api.openapi_proto`): every
  definition in one document, built-in kinds from :mod:`lab.api.openapi_builtin` and
  custom resources from their CRD's schema converted the way kube-apiserver publishes
  them in v2 (``nullable`` and ``x-kubernetes-int-or-string`` fields lose their
  ``type``, an object preserving unknown fields loses its ``properties``, and
  ``anyOf``/``oneOf``/``allOf``/``not`` are dropped, so kubectl does not reject what
  the server accepts).
* **v3** (OpenAPI 3.0; kubectl 1.27+ ``explain``): the index ``/openapi/v3`` lists one
  document per served group-version with a content hash; each document holds the
  schemas of that group-version's kinds plus every schema they reference, and a PATCH
  operation per resource declaring the ``fieldValidation`` and ``dryRun`` parameters
  (kubectl checks those before it leaves field validation to the server). The PATCH
  operations declare no request body, so kubectl computes strategic merge patches from
  v2, as it does against a server whose v3 document it cannot use for that.

Custom resource definitions are named as kube-apiserver names them (the group
reversed, then version and kind: ``com.example.mssql.v1alpha1.MSSQLInstance``), with
``metadata`` a reference to ``ObjectMeta`` and ``x-kubernetes-group-version-kind``.
Every document is consistent with discovery: the same registry serves both.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from lab.api.crds import served_schema
from lab.api.discovery import KUBE_VERSION
from lab.api.fields import clone
from lab.api.openapi_builtin import META, builtin_definitions, definition_name
from lab.api.resources import CRD_KEY, ResourceType

if TYPE_CHECKING:
    from lab.api.state import State

__all__ = ["V2_REF", "V3_REF", "custom_name", "openapi_v2", "openapi_v3_document", "openapi_v3_root"]

V2_REF = "#/definitions/"
V3_REF = "#/components/schemas/"
_VERSION = KUBE_VERSION[2]
_META_DOC = "Standard object's metadata."
_V2_DROP = ("anyOf", "oneOf", "allOf", "not", "nullable")


def custom_name(rt: ResourceType) -> str:
    """The definition name of a custom resource: ``com.example.mssql.v1alpha1.MSSQLInstance``."""
    return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _gvk(rt: ResourceType) -> list[dict[str, str]]:
    return [{"group": rt.group, "version": rt.version, "kind": rt.kind}]


def _to_v2(node: Any) -> Any:
    """A structural schema as kube-apiserver publishes it in OpenAPI v2."""
    if isinstance(node, list):
        return [_to_v2(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_v2(value) for key, value in node.items() if key not in _V2_DROP}
    if node.get("nullable") is True or node.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
    if node.get("x-kubernetes-preserve-unknown-fields") is True:
        out.pop("properties", None)
        out.pop("required", None)
    return out


def _custom_schema(rt: ResourceType, schema: dict[str, Any], v2: bool) -> dict[str, Any]:
    ref = V2_REF if v2 else V3_REF
    published: dict[str, Any] = _to_v2(schema) if v2 else clone(schema)
    published.setdefault("type", "object")
    props = published.get("properties")
    if isinstance(props, dict):
        props["apiVersion"] = {
            "type": "string",
            "description": "APIVersion defines the versioned schema of this representation of an object.",
        }
        props["kind"] = {
            "type": "string",
            "description": "Kind is a string value representing the REST resource this object represents.",
        }
        props["metadata"] = (
            {"$ref": ref + META, "description": _META_DOC}
            if v2
            else {"allOf": [{"$ref": ref + META}], "description": _META_DOC}
        )
    published["x-kubernetes-group-version-kind"] = _gvk(rt)
    return published


def _custom_definitions(state: State, v2: bool) -> dict[str, tuple[ResourceType, dict[str, Any]]]:
    """Custom resource definitions by name, each with the type it describes."""
    out: dict[str, tuple[ResourceType, dict[str, Any]]] = {}
    for rt in _served(state):
        if rt.custom:
            crd = state.store.peek(CRD_KEY, "", rt.crd)
            schema = served_schema(crd, rt.version) if crd is not None else None
            if schema is None:
                schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            out[custom_name(rt)] = (rt, _custom_schema(rt, schema, v2))
    return out


def _patch_paths(types: list[ResourceType], v2: bool) -> dict[str, Any]:
    """A PATCH operation per resource, declaring ``dryRun`` and ``fieldValidation`` (kubectl
    1.20 looks for ``dryRun`` in v2 before ``--dry-run=server``, 1.32 for
    ``fieldValidation`` in v3 before ``--validate=strict``)."""
    paths: dict[str, Any] = {}
    for rt in types:
        if "patch" not in rt.verbs:
            continue
        scope = "namespaces/{namespace}/" if rt.namespaced else ""
        params = [
            {
                "name": name,
                "in": "query",
                **(
                    {"type": "string", "uniqueItems": True}
                    if v2
                    else {"schema": {"type": "string", "uniqueItems": True}}
                ),
            }
            for name in ("dryRun", "fieldValidation")
        ]
        paths[f"/{_gv_path(rt.group, rt.version)}/{scope}{rt.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": _gvk(rt)[0],
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            }
        }
    return paths


def _served(state: State) -> list[ResourceType]:
    registry = state.registry
    return [
        rt
        for group, versions in registry.group_versions().items()
        for version in versions
        for rt in registry.resources(group, version)
    ]


def openapi_v2(state: State) -> dict[str, Any]:
    """The Swagger 2.0 document: every built-in and custom definition the lab serves."""
    definitions = builtin_definitions(V2_REF)
    definitions.update({name: schema for name, (_rt, schema) in _custom_definitions(state, True).items()})
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": _VERSION},
        "paths": _patch_paths(_served(state), True),
        "definitions": dict(sorted(definitions.items())),
    }


def _v3_form(node: Any) -> Any:
    """Built-in definitions in v3 form: a reference with a description becomes ``allOf``."""
    if isinstance(node, list):
        return [_v3_form(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _v3_form(value) for key, value in node.items()}
    if "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


def _references(node: Any, found: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _references(item, found)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(V3_REF):
            found.add(ref[len(V3_REF) :])
        for value in node.values():
            _references(value, found)


def _closure(roots: list[str], pool: dict[str, Any]) -> dict[str, Any]:
    wanted, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        if name in wanted or name not in pool:
            continue
        wanted[name] = pool[name]
        found: set[str] = set()
        _references(pool[name], found)
        todo.extend(found - set(wanted))
    return dict(sorted(wanted.items()))


def openapi_v3_document(state: State, group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI 3.0 document of one served group-version (None when it is not served)."""
    types = state.registry.resources(group, version)
    if not types:
        return None
    pool: dict[str, Any] = _v3_form(builtin_definitions(V3_REF))
    custom = _custom_definitions(state, False)
    pool.update({name: schema for name, (_rt, schema) in custom.items()})
    roots = [custom_name(rt) if rt.custom else definition_name(rt.group, rt.kind, rt.version) for rt in types]
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": _VERSION},
        "paths": _patch_paths(types, False),
        "components": {"schemas": _closure(roots, pool)},
    }


def openapi_v3_root(state: State) -> dict[str, Any]:
    """The v3 index: each served group-version's document with the hash of its content."""
    paths = {}
    for group, versions in state.registry.group_versions().items():
        for version in versions:
            doc = openapi_v3_document(state, group, version) or {}
            digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
