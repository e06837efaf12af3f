"""The spec checks of built-in kinds whose fields the lab's controllers and kubelets read.

A value the controllers cannot use must be refused when it is written, as the real API
server's validation does, or one bad object stops a controller (every pass fails on it)
or moves a running pod. On create and on every update (422 Invalid, the field named):

* ``spec.replicas`` of Deployments, StatefulSets and ReplicaSets: an integer, at least 0;
* a pod's ``spec.restartPolicy``: ``Always``, ``OnFailure`` or ``Never``; ``env``: a list
  of ``{name, value}`` with string values.

On update only, the fields Kubernetes makes immutable (422, Kubernetes' own wording):

* a pod's spec, except the containers' images, ``activeDeadlineSeconds`` and
  ``tolerations`` (``spec.nodeName`` is set once, through the binding subresource);
* a StatefulSet's spec, except ``replicas``, ``ordinals``, ``template``,
  ``updateStrategy``, ``persistentVolumeClaimRetentionPolicy`` and ``minReadySeconds``;
* the ``spec.selector`` of Deployments and ReplicaSets;
* a PersistentVolumeClaim's spec, except ``resources.requests``, and ``volumeName`` and
  ``storageClassName`` while unset (the binder and the default class set them once).

The status subresource never changes the spec, so these checks pass there unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from lab.api.fields import dig
from lab.api.resources import ResourceType
from lab.api.status import invalid

__all__ = ["check_immutable", "check_spec"]

_SCALED = ("deployments.apps", "statefulsets.apps", "replicasets.apps")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations")
_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)
_POD_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)
_STS_FORBIDDEN = (
    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
    "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
    "are forbidden"
)
_PVC_FORBIDDEN = (
    "Forbidden: spec is immutable after creation except resources.requests and "
    "volumeAttributesClassName for bound claims"
)


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def check_spec(rt: ResourceType, obj: dict[str, Any]) -> None:
    """422 when a spec field the lab reads has a value no controller could use."""
    name = str(dig(obj, "metadata", "name") or "")
    if rt.key in _SCALED:
        replicas = dig(obj, "spec", "replicas")
        if replicas is not None:
            if isinstance(replicas, bool) or not isinstance(replicas, int):
                problem = f"Invalid value: {_shown(replicas)}: must be an integer"
                raise invalid(rt.kind, name, "spec.replicas", problem, rt.group)
            if replicas < 0:
                problem = f"Invalid value: {replicas}: must be greater than or equal to 0"
                raise invalid(rt.kind, name, "spec.replicas", problem, rt.group)
    if rt.key == "pods":
        _check_pod(rt, name, obj.get("spec") or {})


def _check_pod(rt: ResourceType, name: str, spec: dict[str, Any]) -> None:
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in _RESTART_POLICIES:
        supported = ", ".join(f'"{p}"' for p in _RESTART_POLICIES)
        problem = f"Unsupported value: {_shown(policy)}: supported values: {supported}"
        raise invalid(rt.kind, name, "spec.restartPolicy", problem, rt.group)
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            env = container.get("env") if isinstance(container, dict) else None
            if env is None:
                continue
            field = f"spec.{kind}[{index}].env"
            if not isinstance(env, list):
                raise invalid(rt.kind, name, field, f"Invalid value: {_shown(env)}: must be a list", rt.group)
            for at, var in enumerate(env):
                if not isinstance(var, dict) or not isinstance(var.get("name"), str) or not var["name"]:
                    raise invalid(rt.kind, name, f"{field}[{at}].name", "Required value", rt.group)
                value = var.get("value")
                if value is not None and not isinstance(value, str):
                    problem = f"Invalid value: {_shown(value)}: must be a string"
                    raise invalid(rt.kind, name, f"{field}[{at}].value", problem, rt.group)


def _without(spec: Any, mutable: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in (spec if isinstance(spec, dict) else {}).items() if k not in mutable}


def _pod_fixed(spec: Any) -> dict[str, Any]:
    """A pod spec without what an update may change: the images, the deadline, the tolerations."""
    fixed = _without(spec, _POD_MUTABLE)
    for kind in ("initContainers", "containers"):
        if isinstance(fixed.get(kind), list):
            fixed[kind] = [_without(c, ("image",)) for c in fixed[kind]]
    return fixed


def check_immutable(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """422 when an update changes a field Kubernetes does not let change."""
    name = str(dig(old, "metadata", "name") or "")
    old_spec, new_spec = old.get("spec"), new.get("spec")
    if rt.key == "pods" and _pod_fixed(old_spec) != _pod_fixed(new_spec):
        raise invalid(rt.kind, name, "spec", _POD_FORBIDDEN, rt.group)
    if rt.key == "statefulsets.apps" and _without(old_spec, _STS_MUTABLE) != _without(new_spec, _STS_MUTABLE):
        raise invalid(rt.kind, name, "spec", _STS_FORBIDDEN, rt.group)
    if rt.key in ("deployments.apps", "replicasets.apps"):
        selector = dig(new, "spec", "selector")
        if selector != dig(old, "spec", "selector"):
            problem = f"Invalid value: {json.dumps(selector)}: field is immutable"
            raise invalid(rt.kind, name, "spec.selector", problem, rt.group)
    if rt.key == "persistentvolumeclaims":
        # Set once by the system, as Kubernetes allows: the binder's volumeName, and a default
        # class given to a claim that named none (retroactive default StorageClass).
        once = tuple(f for f in ("volumeName", "storageClassName") if not dig(old, "spec", f))
        mutable = ("resources", *once)
        if _without(old_spec, mutable) != _without(new_spec, mutable) or _without(
            dig(old, "spec", "resources"), ("requests",)
        ) != _without(dig(new, "spec", "resources"), ("requests",)):
            raise invalid(rt.kind, name, "spec", _PVC_FORBIDDEN, rt.group)
