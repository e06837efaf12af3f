"""Create, update and patch with the real API server's rules.

* create: namespace must exist (404) and not be terminating (403); ``generateName``
  gets 5 random characters; name and labels are validated (422); status is reset
  for kinds whose status only the system writes, defaults are filled in, then the
  admission that acts on create only (DefaultTolerationSeconds; :mod:`lab.api.defaults`).
* update (PUT): 404 if missing; a ``metadata.resourceVersion`` other than the stored
  one is a 409 Conflict; custom resources require it (422 without). On the main
  resource the stored status is kept; on ``/status`` only status changes. Immutable
  fields are compared with the stored object defaulted as today (as Kubernetes decodes it).
* patch: applied to the stored object, then stored like an update (a
  ``resourceVersion`` in the patch is checked too).
Removing the last finalizer of an object being deleted removes it.
"""

from __future__ import annotations

import secrets
from typing import Any

from lab.api import crd_schema
from lab.api.apply import APPLY_PATCH, apply, check_applied
from lab.api.crds import validate_crd
from lab.api.defaults import admit_create, apply_defaults, initial_status
from lab.api.deletion import remove_if_finished
from lab.api.fields import as_list, as_str, clone, meta, now_rfc3339
from lab.api.managed_fields import record_update
from lab.api.patch import PATCH_TYPES, json_patch, merge_patch, strategic_merge_patch
from lab.api.resources import BUILTINS, CRD_KEY, ResourceType
from lab.api.spec_checks import check_immutable, check_spec, same
from lab.api.state import State
from lab.api.status import ApiError, bad_request, conflict, forbidden, invalid, not_found
from lab.api.validation import (
    check_kind,
    check_labels,
    check_metadata_types,
    check_name,
    check_required,
    decode_body,
)

__all__ = ["create", "patch", "update"]

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_BUILTIN_GVR = {(rt.group, rt.version, rt.plural) for rt in BUILTINS}
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def _namespace_checks(state: State, rt: ResourceType, md: dict[str, Any], namespace: str) -> None:
    if not rt.namespaced:
        md.pop("namespace", None)
        return
    if md.get("namespace") not in (None, "", namespace):
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    md["namespace"] = namespace
    ns = state.store.peek("namespaces", "", namespace)
    if ns is None:
        raise not_found("namespaces", namespace)
    if meta(ns).get("deletionTimestamp") is not None:
        raise forbidden(
            f'{rt.plural} "{md.get("name") or md.get("generateName", "")}" is forbidden: '
            f"unable to create new content in namespace {namespace} because it is being terminated"
        )


def create(
    state: State,
    rt: ResourceType,
    namespace: str,
    body: Any,
    dry_run: bool = False,
    manager: str = "",
    managed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Create ``body``; ``manager`` owns its fields (``managed``: ownership already computed)."""
    check_kind(rt, body)
    md = check_metadata_types(body)
    _namespace_checks(state, rt, md, namespace)
    name = str(md.get("name") or "")
    if not name:
        prefix = str(md.get("generateName") or "")
        if not prefix:
            raise invalid(
                rt.kind, "", "metadata.name", "Required value: name or generateName is required", rt.group
            )
        for _ in range(20):
            name = prefix[:58] + "".join(secrets.choice(_ALPHABET) for _ in range(5))
            if state.store.peek(rt.key, namespace if rt.namespaced else "", name) is None:
                break
        md["name"] = name
    check_name(rt, name)
    check_labels(rt, name, md.get("labels"))
    if rt.key == CRD_KEY:
        validate_crd(body, _BUILTIN_GVR)
    initial_status(rt, body)
    apply_defaults(rt, body)
    admit_create(rt, body, state.settings.default_toleration_seconds)
    check_required(rt, body)
    check_spec(rt, body)
    crd_schema.admit(state, rt, body)  # custom resources: prune + schema-validate
    _set_managed(md, managed if managed is not None else record_update(rt, None, body, manager))
    if dry_run:
        md.update({"uid": "", "creationTimestamp": now_rfc3339(), "generation": 1})
        return body
    return state.store.create(rt.key, body)


def _finish(
    state: State,
    rt: ResourceType,
    old: dict[str, Any],
    new: dict[str, Any],
    dry_run: bool,
    subresource: str | None = None,
    manager: str = "",
    managed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Store ``new`` in place of ``old`` after the checks every update passes (the spec's only
    when the spec is written: a status write cannot change it); ``manager`` owns what changed."""
    new["metadata"] = md = dict(meta(new))  # a patch may share it with old, whose managedFields count
    old_md = meta(old)
    for field in _SERVER_META:
        if field in old_md:
            md[field] = old_md[field]
        else:
            md.pop(field, None)
    md.pop("managedFields", None)
    name = as_str(old_md.get("name"))
    check_labels(rt, name, md.get("labels"))
    if old_md.get("deletionTimestamp") is not None:
        added = set(as_list(md.get("finalizers"))) - set(as_list(old_md.get("finalizers")))
        if added:
            raise invalid(
                rt.kind,
                name,
                "metadata.finalizers",
                "Forbidden: no new finalizers can be added if the object is being deleted",
                rt.group,
            )
    if rt.key == CRD_KEY:
        validate_crd(new, _BUILTIN_GVR)
    apply_defaults(rt, new)
    check_required(rt, new)
    if subresource != "status":
        if not same(new.get("spec"), old.get("spec")):
            check_spec(rt, new)
        defaulted = clone(old)  # as Kubernetes decodes a stored object: with today's defaults
        apply_defaults(rt, defaulted)
        check_immutable(rt, defaulted, new)
    crd_schema.admit(state, rt, new, old, subresource)  # custom resources: prune + schema-validate
    _set_managed(md, managed if managed is not None else record_update(rt, old, new, manager, subresource))
    if dry_run:
        return new
    stored = state.store.update(rt.key, new)
    gone = remove_if_finished(state, rt, stored)
    return gone or stored


def _merge_for(
    rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None
) -> dict[str, Any]:
    if subresource == "status":
        # managedFields are not copied: _finish records them anew (a few KB per object, per write)
        managed = meta(old).get("managedFields")
        bare = {**old, "metadata": {k: v for k, v in meta(old).items() if k != "managedFields"}}
        merged = clone(bare)
        if managed is not None:
            merged["metadata"]["managedFields"] = managed
        if new.get("status") is None:
            merged.pop("status", None)
        else:
            merged["status"] = new["status"]
        return merged
    if rt.has("status"):
        if "status" in old:
            new["status"] = clone(old["status"])
        else:
            new.pop("status", None)
    return new


def update(
    state: State,
    rt: ResourceType,
    namespace: str,
    name: str,
    body: Any,
    subresource: str | None = None,
    dry_run: bool = False,
    manager: str = "",
) -> dict[str, Any]:
    check_kind(rt, body)
    md = check_metadata_types(body)
    if md.setdefault("name", name) != name:
        raise bad_request(
            f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
        )
    if rt.namespaced and md.get("namespace") not in (None, "", namespace):
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if rt.namespaced:
        md["namespace"] = namespace
    old = state.store.get(rt.key, namespace, name)
    if old is None:
        raise not_found(rt.plural, name, rt.group)
    sent_rv = md.get("resourceVersion")
    if sent_rv:
        if sent_rv != meta(old).get("resourceVersion"):
            raise conflict(rt.plural, name, rt.group)
    elif rt.custom:
        raise invalid(
            rt.kind,
            name,
            "metadata.resourceVersion",
            "Invalid value: 0x0: must be specified for an update",
            rt.group,
        )
    new = _merge_for(rt, old, body, subresource)
    return _finish(state, rt, old, new, dry_run, subresource, manager)


def patch(
    state: State,
    rt: ResourceType,
    namespace: str,
    name: str,
    content_type: str,
    raw: bytes,
    subresource: str | None = None,
    dry_run: bool = False,
    manager: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Patch the stored object; an apply patch (``manager`` required) also creates it."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == APPLY_PATCH:
        return _apply(state, rt, namespace, name, raw, subresource, dry_run, manager, force)
    if media not in PATCH_TYPES:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join((*PATCH_TYPES, APPLY_PATCH))} (got {content_type!r})",
        )
    if media == "application/strategic-merge-patch+json" and rt.custom:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )
    doc = decode_body(raw, "application/json")
    old = state.store.get(rt.key, namespace, name)
    if old is None:
        raise not_found(rt.plural, name, rt.group)
    if media == "application/json-patch+json":
        new = json_patch(old, doc)
    else:
        if not isinstance(doc, dict):
            raise bad_request("a merge patch must be a JSON object")
        new = (
            merge_patch(old, doc)
            if media == "application/merge-patch+json"
            else strategic_merge_patch(old, doc)
        )
    return _patched(state, rt, old, new, name, subresource, dry_run, manager)


def _patched(
    state: State,
    rt: ResourceType,
    old: dict[str, Any],
    new: Any,
    name: str,
    subresource: str | None,
    dry_run: bool,
    manager: str,
    managed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if not isinstance(new, dict):
        raise bad_request("the patched object is not a JSON object")
    check_kind(rt, new)
    md = check_metadata_types(new)
    old_md = meta(old)
    for field in ("name", "namespace"):
        if md.get(field) != old_md.get(field):
            raise invalid(rt.kind, name, f"metadata.{field}", "Invalid value: field is immutable", rt.group)
    if md.get("resourceVersion") not in (None, old_md.get("resourceVersion")):
        raise conflict(rt.plural, name, rt.group)
    new = _merge_for(rt, old, new, subresource)
    return _finish(state, rt, old, new, dry_run, subresource, manager, managed)


def _apply(
    state: State,
    rt: ResourceType,
    namespace: str,
    name: str,
    raw: bytes,
    subresource: str | None,
    dry_run: bool,
    manager: str,
    force: bool,
) -> dict[str, Any]:
    """Server-side apply (:mod:`lab.api.apply`): create when absent, else merge and store."""
    applied = check_applied(rt, decode_body(raw, "application/yaml"), namespace, name, manager)
    old = state.store.get(rt.key, namespace, name)
    if old is None:
        if subresource is not None:
            raise not_found(rt.plural, name, rt.group)
        created = apply(rt, None, applied, manager, force)
        managed = meta(created).pop("managedFields", None) or []
        return create(state, rt, namespace, created, dry_run, manager, managed)
    new = apply(rt, old, applied, manager, force, subresource)
    return _patched(
        state, rt, old, new, name, subresource, dry_run, manager, meta(new).get("managedFields") or []
    )


def _set_managed(md: dict[str, Any], managed: list[dict[str, Any]]) -> None:
    if managed:
        md["managedFields"] = managed
    else:
        md.pop("managedFields", None)
