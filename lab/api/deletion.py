"""Deletion: graceful pod termination, finalizers, orphaning, namespace teardown.

* Pods: DELETE sets ``deletionTimestamp`` (now + grace) and ``deletionGracePeriodSeconds``
  (``gracePeriodSeconds`` of the request, else ``spec.terminationGracePeriodSeconds``,
  else 30) and the pod stays until its kubelet confirms with a DELETE using
  ``gracePeriodSeconds=0``. A pod without ``spec.nodeName`` or in phase Succeeded/Failed
  goes at once. With ``Settings.pod_removal_grace`` set, the server removes terminating
  pods itself (at once for 0, else via :mod:`lab.api.controllers`).
* Any kind with ``metadata.finalizers``: only ``deletionTimestamp`` is set; the object
  goes when an update removes the last finalizer (see :func:`remove_if_finished`).
* Namespaces: marked Terminating; the controllers delete their content, then them.
* ``propagationPolicy: Orphan`` (the batch/v1 Job default when none is given) removes the
  owner's ``ownerReferences`` from its dependents; Background and Foreground leave the
  dependents to the garbage collector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lab.api.fields import as_dict, as_int, as_list, as_str, dig, format_time, meta
from lab.api.reads import bool_param
from lab.api.resources import CRD_KEY, ResourceType
from lab.api.state import SYSTEM_NAMESPACES, State
from lab.api.status import bad_request, conflict, forbidden, not_found, success

__all__ = ["DeleteOptions", "delete", "parse_options", "remove_if_finished", "remove_now"]


MAX_GRACE = 10 * 365 * 24 * 3600


@dataclass
class DeleteOptions:
    grace: int | None = None
    propagation: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


def parse_options(query: Any, body: Any) -> DeleteOptions:
    """DeleteOptions from the query string and/or a JSON body (400 when malformed)."""
    opts = DeleteOptions()
    if body is not None and not isinstance(body, dict):
        raise bad_request("DeleteOptions must be a JSON object")
    body = body or {}
    grace = body.get("gracePeriodSeconds")
    if "gracePeriodSeconds" in query:
        try:
            grace = int(query["gracePeriodSeconds"])
        except ValueError as exc:
            raise bad_request("gracePeriodSeconds must be an integer") from exc
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        raise bad_request("gracePeriodSeconds must be an integer")
    opts.grace = None if grace is None else max(-1, min(grace, MAX_GRACE))
    propagation = query.get("propagationPolicy", body.get("propagationPolicy"))
    orphan = body.get("orphanDependents")
    if "orphanDependents" in query:
        orphan = bool_param(query, "orphanDependents")
    if propagation is None and isinstance(orphan, bool):
        propagation = "Orphan" if orphan else "Background"
    if propagation not in (None, "Orphan", "Background", "Foreground"):
        raise bad_request(f"invalid propagationPolicy {propagation!r}: Orphan, Background or Foreground")
    opts.propagation = propagation
    pre = body.get("preconditions") or {}
    if not isinstance(pre, dict):
        raise bad_request("preconditions must be an object")
    opts.uid, opts.resource_version = pre.get("uid"), pre.get("resourceVersion")
    dry = query.get("dryRun") or body.get("dryRun")
    opts.dry_run = bool(dry) and dry not in ([], "")
    return opts


def _pod_grace(state: State, pod: dict[str, Any], requested: int | None) -> int:
    spec = as_dict(pod.get("spec"))
    grace = requested if requested is not None else as_int(spec.get("terminationGracePeriodSeconds"), 30)
    grace = min(grace, MAX_GRACE)
    if grace < 0:
        grace = 1
    if not as_str(spec.get("nodeName")) or dig(pod, "status", "phase") in ("Succeeded", "Failed"):
        grace = 0
    if state.settings.pod_removal_grace is not None and state.settings.pod_removal_grace <= 0:
        grace = 0
    return grace


def delete(state: State, rt: ResourceType, namespace: str, name: str, opts: DeleteOptions) -> dict[str, Any]:
    """Delete (or start deleting) an object; returns the response body."""
    store = state.store
    obj = store.get(rt.key, namespace, name)
    if obj is None:
        raise not_found(rt.plural, name, rt.group)
    md = meta(obj)
    if opts.uid is not None and opts.uid != md.get("uid"):
        raise conflict(
            rt.plural,
            name,
            rt.group,
            f"Precondition failed: UID in precondition: {opts.uid}, UID in object meta: {md.get('uid')}",
        )
    if opts.resource_version is not None and opts.resource_version != md.get("resourceVersion"):
        raise conflict(rt.plural, name, rt.group)
    if rt.key == "namespaces" and name in SYSTEM_NAMESPACES[:2]:
        raise forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
    if opts.dry_run:
        return obj
    propagation = opts.propagation or ("Orphan" if rt.key == "jobs.batch" else "Background")
    if propagation == "Orphan":
        orphan_dependents(state, as_str(md.get("uid")))
    now = time.time()
    if rt.key == "pods":
        grace = _pod_grace(state, obj, opts.grace)
        if md.get("deletionTimestamp") is not None and grace >= as_int(
            md.get("deletionGracePeriodSeconds"), grace
        ):
            return obj
        if grace == 0 and not as_list(md.get("finalizers")):
            return remove_now(state, rt.key, namespace, name)
        md["deletionTimestamp"] = format_time(now + grace)
        md["deletionGracePeriodSeconds"] = grace
        if grace > 0 and state.settings.pod_removal_grace is not None:
            state.removal_due[as_str(md.get("uid"))] = time.monotonic() + min(
                grace, state.settings.pod_removal_grace
            )
        return store.update(rt.key, obj)
    if md.get("deletionTimestamp") is not None:
        return obj
    if rt.key == "namespaces":
        md["deletionTimestamp"] = format_time(now)
        md["deletionGracePeriodSeconds"] = 0
        obj["status"] = {**as_dict(obj.get("status")), "phase": "Terminating"}
        state.wake()
        return store.update(rt.key, obj)
    if as_list(md.get("finalizers")):
        md["deletionTimestamp"] = format_time(now)
        md["deletionGracePeriodSeconds"] = 0
        return store.update(rt.key, obj)
    gone = remove_now(state, rt.key, namespace, name)
    if rt.key == "pods" or rt.custom:
        return gone
    return success(200, {"name": name, "group": rt.group, "kind": rt.plural, "uid": md.get("uid")})


def remove_if_finished(state: State, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any] | None:
    """Remove ``obj`` if its deletion is complete (grace over, no finalizers); returns its last state."""
    md = meta(obj)
    if md.get("deletionTimestamp") is None or as_list(md.get("finalizers")):
        return None
    if as_int(md.get("deletionGracePeriodSeconds")) != 0 or rt.key == "namespaces":
        return None
    return remove_now(state, rt.key, as_str(md.get("namespace")), as_str(md.get("name")))


def remove_now(state: State, key: str, namespace: str, name: str) -> dict[str, Any]:
    """Remove an object from the store now (a CRD takes its custom objects with it)."""
    store = state.store
    if key == CRD_KEY:
        for custom_key in state.registry.custom_keys(name):
            for item in list(store.scan(custom_key)):
                store.delete(
                    custom_key,
                    as_str(dig(item, "metadata", "namespace")),
                    as_str(dig(item, "metadata", "name")),
                )
    gone = store.delete(key, namespace, name)
    state.removal_due.pop(as_str(dig(gone, "metadata", "uid")), None)
    state.wake()
    return gone


def orphan_dependents(state: State, owner_uid: str) -> int:
    """Drop ownerReferences to ``owner_uid`` from every object; returns how many changed."""
    store = state.store
    changed = 0
    for key in store.stored_keys():
        for item in list(store.scan(key)):
            refs = as_list(dig(item, "metadata", "ownerReferences"))
            if not any(isinstance(r, dict) and r.get("uid") == owner_uid for r in refs):
                continue
            new = store.get(
                key, as_str(dig(item, "metadata", "namespace")), as_str(dig(item, "metadata", "name"))
            )
            assert new is not None
            kept = [r for r in refs if not (isinstance(r, dict) and r.get("uid") == owner_uid)]
            if kept:
                new["metadata"]["ownerReferences"] = kept
            else:
                new["metadata"].pop("ownerReferences", None)
            store.update(key, new)
            changed += 1
    return changed
