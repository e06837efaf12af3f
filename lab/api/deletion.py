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
  owner's ``ownerReferences`` from its dependents; Background leaves the dependents to
  the garbage collector once the owner is gone.
* ``propagationPolicy: Foreground`` keeps the owner, with ``deletionTimestamp`` and the
  ``foregroundDeletion`` finalizer, while the garbage collector (:func:`foreground_pass`)
  deletes its dependents; when none with ``blockOwnerDeletion: true`` is left, the
  finalizer is removed and the owner goes (``kubectl delete --cascade=foreground`` waits
  for that). A dependent that another, live owner still holds only loses its reference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from lab.api.fields import as_dict, as_int, as_list, as_str, dig, format_time, meta
from lab.api.reads import bool_param
from lab.api.resources import CRD_KEY, ResourceType
from lab.api.state import SYSTEM_NAMESPACES, State
from lab.api.status import ApiError, bad_request, conflict, forbidden, not_found, success

__all__ = [
    "FOREGROUND",
    "DeleteOptions",
    "delete",
    "foreground_pass",
    "parse_options",
    "remove_if_finished",
    "remove_now",
]


log = logging.getLogger(__name__)

MAX_GRACE = 10 * 365 * 24 * 3600
#: The finalizer that holds an owner deleted with ``propagationPolicy: Foreground``.
FOREGROUND = "foregroundDeletion"


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
    held = (
        propagation == "Foreground"
        and rt.key != "namespaces"
        and FOREGROUND not in as_list(md.get("finalizers"))
    )
    if held:
        md["finalizers"] = [*as_list(md.get("finalizers")), FOREGROUND]
    now = time.time()
    if rt.key == "pods":
        grace = _pod_grace(state, obj, opts.grace)
        if md.get("deletionTimestamp") is not None and grace >= as_int(
            md.get("deletionGracePeriodSeconds"), grace
        ):
            return store.update(rt.key, obj) if held else obj
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
        return store.update(rt.key, obj) if held else obj
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


def _dependents(state: State) -> tuple[dict[str, list[tuple[str, dict[str, Any]]]], set[str]]:
    """Objects by the uid of each owner they name, and every uid some object names as owner."""
    by_owner: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key in state.store.stored_keys():
        for obj in state.store.scan(key):
            for ref in as_list(dig(obj, "metadata", "ownerReferences")):
                if isinstance(ref, dict):
                    by_owner.setdefault(as_str(ref.get("uid")), []).append((key, obj))
    return by_owner, set(by_owner)


def _waiting(state: State, uid: str) -> bool:
    """Whether ``uid`` names an object that is gone or itself waiting for its dependents."""
    where = state.store.locate(uid)
    if where is None:
        return True
    owner = state.store.peek(*where)
    return owner is None or FOREGROUND in as_list(dig(owner, "metadata", "finalizers"))


def _release(state: State, key: str, dependent: dict[str, Any], owner_uid: str) -> None:
    """Drop ``dependent``'s reference to ``owner_uid`` (another, live owner keeps it)."""
    md = meta(dependent)
    new = state.store.get(key, as_str(md.get("namespace")), as_str(md.get("name")))
    if new is None:
        return
    refs = as_list(new["metadata"].get("ownerReferences"))
    new["metadata"]["ownerReferences"] = [
        r for r in refs if not (isinstance(r, dict) and r.get("uid") == owner_uid)
    ]
    state.store.update(key, new)


_refusals: set[str] = set()


def _refused(key: str, md: dict[str, Any], exc: ApiError) -> None:
    """Log once per dependent that the foreground collector could not delete it."""
    uid = as_str(md.get("uid"))
    if uid in _refusals:
        return
    _refusals.add(uid)
    where = f"{md.get('namespace')}/{md.get('name')}"
    log.warning("foreground deletion: cannot delete %s %s: %s", key, where, exc)


def foreground_pass(state: State) -> int:
    """One garbage-collector pass over owners being deleted in the foreground.

    Deletes each such owner's dependents (Foreground for those that own objects
    themselves, else Background; one still held by another live owner only loses the
    reference) and, once no dependent with ``blockOwnerDeletion: true`` is left, removes
    the ``foregroundDeletion`` finalizer so the owner goes. Returns how many owners went.
    """
    store = state.store
    owners = [
        (key, obj)
        for key in store.stored_keys()
        for obj in store.scan(key)
        if FOREGROUND in as_list(dig(obj, "metadata", "finalizers"))
        and dig(obj, "metadata", "deletionTimestamp") is not None
    ]
    if not owners:
        return 0
    by_owner, owning = _dependents(state)
    finished = 0
    for key, owner in owners:
        uid = as_str(dig(owner, "metadata", "uid"))
        blocked = False
        for dep_key, dep in by_owner.get(uid, []):
            dmd = meta(dep)
            refs = [r for r in as_list(dmd.get("ownerReferences")) if isinstance(r, dict)]
            mine = next((r for r in refs if r.get("uid") == uid), {})
            if dmd.get("deletionTimestamp") is None:
                if any(not _waiting(state, as_str(r.get("uid"))) for r in refs if r.get("uid") != uid):
                    _release(state, dep_key, dep, uid)
                    continue
                policy = "Foreground" if as_str(dmd.get("uid")) in owning else "Background"
                dep_rt = state.registry.by_key(dep_key)
                if dep_rt is not None:
                    try:
                        delete(
                            state,
                            dep_rt,
                            as_str(dmd.get("namespace")),
                            as_str(dmd.get("name")),
                            DeleteOptions(propagation=policy),
                        )
                    except ApiError as exc:
                        if exc.code != 404:
                            # e.g. a namespace that may not be deleted: it stays, and so does
                            # the owner if it blocks; the others are still collected
                            _refused(dep_key, dmd, exc)
            if mine.get("blockOwnerDeletion") is True and store.locate(as_str(dmd.get("uid"))) is not None:
                blocked = True
        if blocked:
            continue
        md = meta(owner)
        current = store.get(key, as_str(md.get("namespace")), as_str(md.get("name")))
        if current is None:
            continue
        current["metadata"]["finalizers"] = [
            f for f in as_list(current["metadata"].get("finalizers")) if f != FOREGROUND
        ]
        if not current["metadata"]["finalizers"]:
            current["metadata"].pop("finalizers")
        stored = store.update(key, current)
        rt = state.registry.by_key(key)
        if rt is not None and remove_if_finished(state, rt, stored) is not None:
            finished += 1
    return finished
