"""Table columns of workload, batch, policy, storage, RBAC and other group kinds.

Merged into :data:`lab.api.printers.PRINTERS`; see :mod:`lab.api.columns` for the cells.
"""

from __future__ import annotations

from typing import Any

from lab.api.columns import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    SELECTOR,
    Column,
    ago,
    count,
    created_at,
    integer,
    or_na,
    path,
    ratio,
)
from lab.api.fields import as_dict, as_int, as_list, as_str, dig, human_duration, meta, parse_time

__all__ = ["APPS_PRINTERS"]


def _job_status(job: dict[str, Any], _now: float) -> str:
    conds = {
        as_str(dig(c, "type")): as_str(dig(c, "status")) for c in as_list(dig(job, "status", "conditions"))
    }
    for ctype in ("Failed", "Complete", "Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if conds.get(ctype) == "True":
            return ctype
    return "Terminating" if meta(job).get("deletionTimestamp") else "Running"


def _job_duration(job: dict[str, Any], now: float) -> str:
    start = parse_time(dig(job, "status", "startTime"))
    if start is None:
        return ""
    end = parse_time(dig(job, "status", "completionTime")) or now
    return human_duration(end - start)


def _completions(job: dict[str, Any], _now: float) -> str:
    return f"{as_int(dig(job, 'status', 'succeeded'))}/{as_int(dig(job, 'spec', 'completions'), 1)}"


def _node_selector(obj: dict[str, Any], _now: float) -> str:
    selector = as_dict(dig(obj, "spec", "template", "spec", "nodeSelector"))
    return ",".join(f"{k}={v}" for k, v in selector.items()) or "<none>"


def _storage_class_name(sc: dict[str, Any], _now: float) -> str:
    annotations = as_dict(meta(sc).get("annotations"))
    default = annotations.get("storageclass.kubernetes.io/is-default-class") == "true"
    return as_str(meta(sc).get("name")) + (" (default)" if default else "")


def _role_ref(obj: dict[str, Any], _now: float) -> str:
    return f"{as_str(dig(obj, 'roleRef', 'kind'))}/{as_str(dig(obj, 'roleRef', 'name'))}"


APPS_PRINTERS: dict[str, list[Column]] = {
    "deployments.apps": [
        NAME,
        Column("Ready", ratio(("status", "readyReplicas"), ("spec", "replicas"))),
        Column("Up-to-date", integer("status", "updatedReplicas"), "integer"),
        Column("Available", integer("status", "availableReplicas"), "integer"),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    "statefulsets.apps": [
        NAME,
        Column("Ready", ratio(("status", "readyReplicas"), ("spec", "replicas"))),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    "replicasets.apps": [
        NAME,
        Column("Desired", integer("spec", "replicas"), "integer"),
        Column("Current", integer("status", "replicas"), "integer"),
        Column("Ready", integer("status", "readyReplicas"), "integer"),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    "daemonsets.apps": [
        NAME,
        Column("Desired", integer("status", "desiredNumberScheduled"), "integer"),
        Column("Current", integer("status", "currentNumberScheduled"), "integer"),
        Column("Ready", integer("status", "numberReady"), "integer"),
        Column("Up-to-date", integer("status", "updatedNumberScheduled"), "integer"),
        Column("Available", integer("status", "numberAvailable"), "integer"),
        Column("Node Selector", _node_selector),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    "jobs.batch": [
        NAME,
        Column("Status", _job_status),
        Column("Completions", _completions),
        Column("Duration", _job_duration),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    "cronjobs.batch": [
        NAME,
        Column("Schedule", path("spec", "schedule", default="")),
        Column("Timezone", path("spec", "timeZone")),
        Column("Suspend", lambda o, _n: "True" if dig(o, "spec", "suspend") is True else "False"),
        Column("Active", count("status", "active"), "integer"),
        Column("Last Schedule", ago("status", "lastScheduleTime")),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    "poddisruptionbudgets.policy": [
        NAME,
        Column("Min Available", or_na("spec", "minAvailable")),
        Column("Max Unavailable", or_na("spec", "maxUnavailable")),
        Column("Allowed Disruptions", integer("status", "disruptionsAllowed"), "integer"),
        AGE,
    ],
    "storageclasses.storage.k8s.io": [
        Column("Name", _storage_class_name, format="name"),
        Column("Provisioner", path("provisioner", default="")),
        Column("ReclaimPolicy", path("reclaimPolicy", default="Delete")),
        Column("VolumeBindingMode", path("volumeBindingMode", default="Immediate")),
        Column(
            "AllowVolumeExpansion", lambda o, _n: "true" if o.get("allowVolumeExpansion") is True else "false"
        ),
        AGE,
    ],
    "customresourcedefinitions.apiextensions.k8s.io": [NAME, created_at()],
    "leases.coordination.k8s.io": [NAME, Column("Holder", path("spec", "holderIdentity", default="")), AGE],
    "rolebindings.rbac.authorization.k8s.io": [NAME, Column("Role", _role_ref), AGE],
    "clusterrolebindings.rbac.authorization.k8s.io": [NAME, Column("Role", _role_ref), AGE],
    "roles.rbac.authorization.k8s.io": [NAME, created_at()],
    "clusterroles.rbac.authorization.k8s.io": [NAME, created_at()],
}
