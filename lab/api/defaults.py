"""Kind-specific defaulting, the way the real API server fills in omitted fields.

On create, kinds with a ``status`` subresource start with a server-chosen status
(pods ``Pending``, namespaces ``Active``, PVCs ``Pending``, other built-ins ``{}``,
custom resources none) except nodes, which register with the status their kubelet
sends. Spec defaults
(``replicas: 1``, pod ``restartPolicy``, ``terminationGracePeriodSeconds: 30``,
``volumes: []`` and so on) apply on create and on every update; built-in kinds always
have ``spec`` (and ``status`` where it is a subresource), as the real server serializes
them even when empty. Secrets turn
``stringData`` into base64 ``data`` and get ``type: Opaque`` when it is omitted. CRDs get
the status the server maintains. Pods and the pod templates of workloads get the pod,
container and probe defaults of :mod:`lab.api.pod_defaults` (a template's
``creationTimestamp: null`` is dropped, so a template sent back by ``kubectl rollout
undo`` hashes as the one stored). A new pod's ``status.qosClass`` is computed once, at
creation; :func:`admit_create` runs the admission that only acts on create (the
DefaultTolerationSeconds plugin).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from lab.api.crds import crd_status
from lab.api.fields import as_dict, as_list, dig
from lab.api.pod_defaults import (
    default_pod_spec,
    default_requests,
    default_template_meta,
    default_tolerations,
    pod_qos,
)
from lab.api.resources import CRD_KEY, ResourceType

__all__ = ["admit_create", "apply_defaults", "initial_status"]

_INITIAL_STATUS: dict[str, dict[str, Any]] = {
    "pods": {"phase": "Pending"},
    "namespaces": {"phase": "Active"},
    "persistentvolumeclaims": {"phase": "Pending"},
    "persistentvolumes": {"phase": "Pending"},
    "poddisruptionbudgets.policy": {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
}


def initial_status(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Reset ``status`` on create for kinds whose status only the system writes."""
    if not rt.has("status") or rt.key == "nodes":
        return
    if rt.custom:
        obj.pop("status", None)
    else:
        obj["status"] = dict(_INITIAL_STATUS.get(rt.key, {}))
    if rt.key == "pods":
        obj["status"]["qosClass"] = pod_qos(obj)


def admit_create(rt: ResourceType, obj: dict[str, Any], toleration_seconds: int) -> None:
    """Admission that acts on create only: DefaultTolerationSeconds for pods."""
    if rt.key == "pods":
        default_tolerations(obj, toleration_seconds)


def _setdefaults(target: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if target.get(key) is None:
            target[key] = value


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def _pod(obj: dict[str, Any]) -> None:
    spec = _spec(obj)
    _setdefaults(
        spec,
        {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "volumes": [],
        },
    )
    default_pod_spec(spec)
    default_requests(spec)


def _template(obj: dict[str, Any], *path: str, restart_policy: bool = True) -> None:
    """Pod defaults for the pod template at ``path`` (when it is an object)."""
    template = dig(obj, *path)
    if isinstance(template, dict):
        default_template_meta(template)
        default_pod_spec(template.get("spec"), restart_policy)


def _workload(extra: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def apply(obj: dict[str, Any]) -> None:
        _setdefaults(_spec(obj), {"replicas": 1, "revisionHistoryLimit": 10, **extra})
        _template(obj, "spec", "template")

    return apply


def _status_counts(*fields: str) -> Callable[[dict[str, Any]], None]:
    """Status fields the API always serializes (clients require them), as 0 when unset."""

    def apply(obj: dict[str, Any]) -> None:
        status = obj.get("status")
        if isinstance(status, dict):
            _setdefaults(status, dict.fromkeys(fields, 0))

    return apply


def _job(obj: dict[str, Any]) -> None:
    _setdefaults(
        _spec(obj),
        {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "suspend": False,
        },
    )
    _template(obj, "spec", "template", restart_policy=False)


def _cronjob(obj: dict[str, Any]) -> None:
    _setdefaults(
        _spec(obj),
        {
            "concurrencyPolicy": "Allow",
            "suspend": False,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
        },
    )
    _template(obj, "spec", "jobTemplate", "spec", "template", restart_policy=False)


def _service(obj: dict[str, Any]) -> None:
    spec = _spec(obj)
    _setdefaults(spec, {"type": "ClusterIP", "sessionAffinity": "None"})
    for port in as_list(spec.get("ports")):
        if isinstance(port, dict):
            _setdefaults(port, {"protocol": "TCP"})
            if "port" in port:
                _setdefaults(port, {"targetPort": port["port"]})


def _secret(obj: dict[str, Any]) -> None:
    if obj.get("type") in (None, ""):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.get("data")
        data = dict(data) if isinstance(data, dict) else {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _replicaset(obj: dict[str, Any]) -> None:
    _setdefaults(_spec(obj), {"replicas": 1})
    _template(obj, "spec", "template")


def _pvc(obj: dict[str, Any]) -> None:
    _setdefaults(_spec(obj), {"volumeMode": "Filesystem"})


def _pv(obj: dict[str, Any]) -> None:
    _setdefaults(_spec(obj), {"persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"})


def _crd(obj: dict[str, Any]) -> None:
    obj["status"] = crd_status(obj)


_DEFAULTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pods": _pod,
    "services": _service,
    "secrets": _secret,
    "persistentvolumeclaims": _pvc,
    "persistentvolumes": _pv,
    "deployments.apps": _workload(
        {
            "progressDeadlineSeconds": 600,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
        }
    ),
    "statefulsets.apps": _workload(
        {
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        }
    ),
    "replicasets.apps": _replicaset,
    "daemonsets.apps": lambda obj: _template(obj, "spec", "template"),
    "jobs.batch": _job,
    "cronjobs.batch": _cronjob,
    CRD_KEY: _crd,
}


_STATUS_COUNTS = {
    "replicasets.apps": _status_counts("replicas"),
    "statefulsets.apps": _status_counts("replicas", "availableReplicas"),
    "daemonsets.apps": _status_counts(
        "currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady"
    ),
}


_NO_SPEC = {
    "configmaps",
    "secrets",
    "events",
    "events.events.k8s.io",
    "serviceaccounts",
    "storageclasses.storage.k8s.io",
    "endpoints",
    "endpointslices.discovery.k8s.io",
    "controllerrevisions.apps",
}


def apply_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Fill in omitted fields of ``obj`` (create and update)."""
    if not rt.custom and rt.key not in _NO_SPEC and rt.group != "rbac.authorization.k8s.io":
        if not isinstance(obj.get("spec"), dict):
            obj["spec"] = {}
        if rt.has("status") and not isinstance(obj.get("status"), dict):
            obj["status"] = {}
    counts = _STATUS_COUNTS.get(rt.key)
    if counts is not None:
        counts(obj)
    if rt.key == "namespaces":
        md = as_dict(obj.get("metadata"))
        md.setdefault("labels", {})["kubernetes.io/metadata.name"] = str(md.get("name"))
    defaulter = _DEFAULTERS.get(rt.key)
    if defaulter is not None:
        defaulter(obj)
