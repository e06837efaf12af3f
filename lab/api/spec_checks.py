"""The spec checks of built-in kinds whose fields the lab's controllers and kubelets read.

A value the controllers cannot use must be refused when it is written, as the real API
server's validation does, or one bad object stops a controller (every pass fails on it)
or moves a running pod. On create, and on an update that changes the spec (422 Invalid,
the field named; values shown as JSON):

* ``spec.replicas`` of Deployments, StatefulSets and ReplicaSets: an integer, 0 to 2^31-1;
* a pod spec, the pod's own or a workload's template (``spec.template.spec``; a CronJob's
  ``spec.jobTemplate.spec.template.spec``): ``containers``/``initContainers`` lists, each
  ``env`` a list of ``{name, value}`` with string values, and ``restartPolicy`` one of
  ``Always``/``OnFailure``/``Never`` for a pod, ``Always`` for a Deployment's,
  StatefulSet's, ReplicaSet's or DaemonSet's template, ``OnFailure``/``Never`` for a
  Job's (``""`` counts as unset, which defaults to ``Always``).

On update only, the fields Kubernetes makes immutable (422, Kubernetes' own wording),
compared as Kubernetes compares them (an absent field, ``null``, ``[]`` and ``{}`` are
equal):

* a pod's spec, except the containers' images, ``activeDeadlineSeconds`` and
  ``tolerations`` (``spec.nodeName`` is set once, through the binding subresource);
* a StatefulSet's spec, except ``replicas``, ``ordinals``, ``template``,
  ``updateStrategy``, ``persistentVolumeClaimRetentionPolicy`` and ``minReadySeconds``;
* the ``spec.selector`` of Deployments and ReplicaSets;
* a PersistentVolumeClaim's spec, except ``volumeName`` and ``storageClassName`` while
  unset (the binder and the default class set them once), and ``resources.requests``
  of a Bound claim, which may grow but not shrink.

Writes to the ``status`` subresource are not checked: they cannot change the spec, and an
object stored before these checks must keep its status current.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from lab.api.fields import dig
from lab.api.pod_paths import check_data_keys, check_pod_paths
from lab.api.resources import ResourceType
from lab.api.status import invalid

__all__ = ["TEMPLATES", "check_immutable", "check_spec", "same", "semantic"]

_SCALED = ("deployments.apps", "statefulsets.apps", "replicasets.apps")
_INT32_MAX = 2**31 - 1
_POD_POLICIES = ("Always", "OnFailure", "Never")
#: Where each workload keeps its pod template, and the restart policies it allows there.
TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "deployments.apps": (("spec", "template", "spec"), ("Always",)),
    "statefulsets.apps": (("spec", "template", "spec"), ("Always",)),
    "replicasets.apps": (("spec", "template", "spec"), ("Always",)),
    "daemonsets.apps": (("spec", "template", "spec"), ("Always",)),
    "jobs.batch": (("spec", "template", "spec"), ("OnFailure", "Never")),
    "cronjobs.batch": (("spec", "jobTemplate", "spec", "template", "spec"), ("OnFailure", "Never")),
}
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
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_SUFFIX = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}


def _shown(value: Any) -> str:
    return json.dumps(value, default=str)


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
            if replicas > _INT32_MAX:
                problem = f"Invalid value: {replicas}: must be less than or equal to {_INT32_MAX}"
                raise invalid(rt.kind, name, "spec.replicas", problem, rt.group)
    if rt.key in ("configmaps", "secrets"):
        check_data_keys(rt, name, obj)
    if rt.key == "pods":
        _check_pod_spec(rt, name, obj.get("spec"), "spec", _POD_POLICIES)
    elif rt.key in TEMPLATES:
        path, policies = TEMPLATES[rt.key]
        template = dig(obj, *path)
        if template is not None:
            _check_pod_spec(rt, name, template, ".".join(path), policies)


def _check_pod_spec(rt: ResourceType, name: str, spec: Any, at: str, policies: tuple[str, ...]) -> None:
    if not isinstance(spec, dict):
        raise invalid(rt.kind, name, at, f"Invalid value: {_shown(spec)}: must be an object", rt.group)
    policy = spec.get("restartPolicy")
    if policy not in (None, "") and policy not in policies:
        supported = ", ".join(f'"{p}"' for p in policies)
        problem = f"Unsupported value: {_shown(policy)}: supported values: {supported}"
        raise invalid(rt.kind, name, f"{at}.restartPolicy", problem, rt.group)
    for kind in ("initContainers", "containers"):
        containers = spec.get(kind)
        if containers is None:
            continue
        if not isinstance(containers, list):
            problem = f"Invalid value: {_shown(containers)}: must be a list"
            raise invalid(rt.kind, name, f"{at}.{kind}", problem, rt.group)
        for index, container in enumerate(containers):
            env = container.get("env") if isinstance(container, dict) else None
            if env is None:
                continue
            field = f"{at}.{kind}[{index}].env"
            if not isinstance(env, list):
                raise invalid(rt.kind, name, field, f"Invalid value: {_shown(env)}: must be a list", rt.group)
            for number, var in enumerate(env):
                if not isinstance(var, dict) or not isinstance(var.get("name"), str) or not var["name"]:
                    raise invalid(rt.kind, name, f"{field}[{number}].name", "Required value", rt.group)
                value = var.get("value")
                if value is not None and not isinstance(value, str):
                    problem = f"Invalid value: {_shown(value)}: must be a string"
                    raise invalid(rt.kind, name, f"{field}[{number}].value", problem, rt.group)
    check_pod_paths(rt, name, spec, at)


def semantic(value: Any) -> Any:
    """``value`` without what Kubernetes' semantic equality ignores: null, ``[]`` and ``{}`` members."""
    if isinstance(value, dict):
        kept = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """Equal as Kubernetes compares (:func:`semantic`), and of the same JSON types (``true`` is not ``1``)."""
    return json.dumps(semantic(a), sort_keys=True) == json.dumps(semantic(b), sort_keys=True)


def _without(spec: Any, mutable: tuple[str, ...]) -> dict[str, Any]:
    """``spec`` without the keys ``mutable``; compared with :func:`same`, which ignores the rest."""
    return {k: v for k, v in (spec if isinstance(spec, dict) else {}).items() if k not in mutable}


def _pod_fixed(spec: Any) -> dict[str, Any]:
    """A pod spec without what an update may change: the images, the deadline, the tolerations."""
    fixed = _without(spec, _POD_MUTABLE)
    for kind in ("initContainers", "containers"):
        if isinstance(fixed.get(kind), list):
            fixed[kind] = [_without(c, ("image",)) for c in fixed[kind]]
    return fixed


def _quantity(text: Any) -> Decimal | None:
    match = _QUANTITY.match(str(text))
    if match is None:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX.get(match.group(2) or "", Decimal(1))
    except InvalidOperation:
        return None


def _check_claim(rt: ResourceType, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    # Set once by the system: the binder's volumeName while empty, a default class while absent.
    once = ("volumeName",) if not dig(old, "spec", "volumeName") else ()
    if dig(old, "spec", "storageClassName") is None:
        once = (*once, "storageClassName")
    if not same(
        _without(old.get("spec"), ("resources", *once)), _without(new.get("spec"), ("resources", *once))
    ):
        raise invalid(rt.kind, name, "spec", _PVC_FORBIDDEN, rt.group)
    old_resources, new_resources = dig(old, "spec", "resources"), dig(new, "spec", "resources")
    if not same(_without(old_resources, ("requests",)), _without(new_resources, ("requests",))):
        raise invalid(rt.kind, name, "spec", _PVC_FORBIDDEN, rt.group)
    old_requests = semantic(dig(old_resources, "requests")) or {}
    new_requests = semantic(dig(new_resources, "requests")) or {}
    if same(old_requests, new_requests):
        return
    if dig(old, "status", "phase") != "Bound" or set(old_requests) != set(new_requests):
        raise invalid(rt.kind, name, "spec", _PVC_FORBIDDEN, rt.group)
    before, after = _quantity(old_requests.get("storage")), _quantity(new_requests.get("storage"))
    if before is not None and after is not None and after < before:
        problem = "Forbidden: field can not be less than previous value"
        raise invalid(rt.kind, name, "spec.resources.requests.storage", problem, rt.group)


def check_immutable(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """422 when an update changes a field Kubernetes does not let change."""
    name = str(dig(old, "metadata", "name") or "")
    old_spec, new_spec = old.get("spec"), new.get("spec")
    if rt.key == "pods" and not same(_pod_fixed(old_spec), _pod_fixed(new_spec)):
        raise invalid(rt.kind, name, "spec", _POD_FORBIDDEN, rt.group)
    if rt.key == "statefulsets.apps" and not same(
        _without(old_spec, _STS_MUTABLE), _without(new_spec, _STS_MUTABLE)
    ):
        raise invalid(rt.kind, name, "spec", _STS_FORBIDDEN, rt.group)
    if rt.key in ("deployments.apps", "replicasets.apps"):
        selector = dig(new, "spec", "selector")
        if not same(selector, dig(old, "spec", "selector")):
            problem = f"Invalid value: {_shown(selector)}: field is immutable"
            raise invalid(rt.kind, name, "spec.selector", problem, rt.group)
    if rt.key == "persistentvolumeclaims":
        _check_claim(rt, name, old, new)
