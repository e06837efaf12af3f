"""Subresources other than status and log: scale and binding (and the streaming ones refused).

* ``scale`` (deployments, statefulsets, replicasets): an ``autoscaling/v1 Scale`` view of
  ``spec.replicas``; GET, PUT and PATCH (merge/strategic/json) change only that field, and
  record it in ``managedFields`` as the real server does: an ``Update`` by the request's
  manager with ``subresource: scale`` owning ``spec.replicas`` (so a later apply of another
  replica count conflicts instead of silently undoing ``kubectl scale``).
* ``binding`` (pods): POST a ``Binding`` to ``pods/{name}/binding`` or to ``bindings``
  (``metadata.name`` = the pod) to set ``spec.nodeName`` once (409 if the pod is already
  bound) and mark the pod ``PodScheduled``; what a scheduler does.
* ``exec``, ``attach`` and ``portforward`` (pods): a Status saying the lab does not
  support them (:func:`unsupported_streaming`), as a server answers a verb it does not
  serve, never a 404 that would read as a missing pod.

Access reviews (``selfsubjectaccessreviews`` and the others) are :mod:`lab.api.access_reviews`.
"""

from __future__ import annotations

from typing import Any

from lab.api.fields import as_dict, as_list, as_str, clone, dig, meta, now_rfc3339
from lab.api.managed_fields import record_update
from lab.api.patch import json_patch, merge_patch, strategic_merge_patch
from lab.api.resources import ResourceType
from lab.api.state import State
from lab.api.status import ApiError, bad_request, conflict, invalid, not_found, success
from lab.api.validation import decode_body

SUBRESOURCE_CODE, SUBRESOURCE_REASON = 405, "MethodNotAllowed"

__all__ = ["STREAMING", "bind", "get_scale", "patch_scale", "unsupported_streaming", "update_scale"]

#: Pod subresources that open a stream to a container (``kubectl exec``, ``cp``, ``attach``,
#: ``port-forward``); the lab has no container runtime to carry them.
STREAMING = ("attach", "exec", "portforward")
_VERBS = {"attach": "attach", "exec": "exec (and cp)", "portforward": "port-forward"}


def unsupported_streaming(subresource: str, pod: str) -> ApiError:
    """What the server answers to ``pods/{pod}/{subresource}`` for a streaming subresource."""
    return ApiError(
        SUBRESOURCE_CODE,
        f"pods/{subresource} is not supported by the lab API server: kubectl {_VERBS[subresource]} "
        f'cannot reach pod "{pod}", whose containers are plain processes on the lab host; '
        "run the command on the host instead",
        SUBRESOURCE_REASON,
    )


def _selector_string(selector: Any) -> str:
    parts = [f"{k}={v}" for k, v in as_dict(dig(selector, "matchLabels")).items()]
    for expr in as_list(dig(selector, "matchExpressions")):
        key, op, values = as_str(dig(expr, "key")), dig(expr, "operator"), as_list(dig(expr, "values"))
        if op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        elif op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(str(v) for v in values)})")
    return ",".join(parts)


def _load(state: State, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
    obj = state.store.get(rt.key, namespace, name)
    if obj is None:
        raise not_found(rt.plural, name, rt.group)
    return obj


def _scale_view(obj: dict[str, Any]) -> dict[str, Any]:
    md = meta(obj)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md
        },
        "spec": {"replicas": dig(obj, "spec", "replicas", default=1)},
        "status": {
            "replicas": dig(obj, "status", "replicas", default=0),
            "selector": _selector_string(dig(obj, "spec", "selector")),
        },
    }


def get_scale(state: State, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
    return _scale_view(_load(state, rt, namespace, name))


def _apply_scale(
    state: State, rt: ResourceType, obj: dict[str, Any], scale: Any, manager: str
) -> dict[str, Any]:
    if not isinstance(scale, dict):
        raise bad_request("a Scale must be a JSON object")
    name = as_str(dig(obj, "metadata", "name"))
    sent_rv = dig(scale, "metadata", "resourceVersion")
    if sent_rv not in (None, "") and sent_rv != dig(obj, "metadata", "resourceVersion"):
        raise conflict(rt.plural, name, rt.group)
    replicas = dig(scale, "spec", "replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise invalid(
            "Scale",
            name,
            "spec.replicas",
            f"Invalid value: {replicas!r}: must be a non-negative integer",
            "autoscaling",
        )
    new = clone(obj)
    new.setdefault("spec", {})["replicas"] = replicas
    managed = record_update(rt, obj, new, manager, "scale")
    if managed:
        meta(new)["managedFields"] = managed
    return _scale_view(state.store.update(rt.key, new))


def update_scale(
    state: State, rt: ResourceType, namespace: str, name: str, body: Any, manager: str = ""
) -> dict[str, Any]:
    """PUT ``.../scale``: set ``spec.replicas``; ``manager`` (the request's field manager) owns it."""
    return _apply_scale(state, rt, _load(state, rt, namespace, name), body, manager)


def patch_scale(
    state: State,
    rt: ResourceType,
    namespace: str,
    name: str,
    content_type: str,
    raw: bytes,
    manager: str = "",
) -> dict[str, Any]:
    """PATCH ``.../scale`` (merge, strategic or JSON patch of the Scale view), as :func:`update_scale`."""
    obj = _load(state, rt, namespace, name)
    doc = decode_body(raw, "application/json")
    media = content_type.split(";", 1)[0].strip().lower()
    view = _scale_view(obj)
    if media == "application/json-patch+json":
        patched = json_patch(view, doc)
    elif media in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(doc, dict):
            raise bad_request("a merge patch must be a JSON object")
        patched = (
            merge_patch(view, doc)
            if media.startswith("application/merge")
            else strategic_merge_patch(view, doc)
        )
    else:
        raise ApiError(415, f"unsupported patch type {content_type!r}")
    return _apply_scale(state, rt, obj, patched, manager)


def bind(state: State, pods: ResourceType, namespace: str, name: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("a Binding must be a JSON object")
    node = dig(body, "target", "name")
    if not isinstance(node, str) or not node:
        raise invalid("Binding", name, "target.name", "Required value")
    pod = _load(state, pods, namespace, name)
    current = dig(pod, "spec", "nodeName")
    if current:
        raise conflict(pods.plural, name, "", f'pod {name} is already assigned to node "{current}"')
    if meta(pod).get("deletionTimestamp") is not None:
        raise conflict(pods.plural, name, "", f"pod {name} is being deleted, cannot be assigned to a host")
    pod.setdefault("spec", {})["nodeName"] = node
    status = pod.setdefault("status", {})
    conditions = [c for c in as_list(status.get("conditions")) if dig(c, "type") != "PodScheduled"]
    conditions.append(
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
    )
    status["conditions"] = conditions
    state.store.update(pods.key, pod)
    return success(201)
