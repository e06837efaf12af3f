"""What the lab operator creates for an MSSQLInstance, as plain Kubernetes objects.

For instance ``<name>`` in namespace ``<ns>`` (all owned by the instance through a
controller ownerReference, labelled ``app: mssql``, ``mssql.example.com/instance:
<name>`` and ``app.kubernetes.io/managed-by: mssql-lab-operator``):

* Secret ``<name>-credentials``: ``username: harness``, ``password``: 24 random
  letters and digits, made once and never changed or logged.
* Service ``<name>``: ClusterIP, port ``mssql`` = the instance's port.
* StatefulSet ``<name>``: 1 replica, image ``mssql-lab/engine:15``, container port
  ``mssql``, env ``MSSQL_SA_PASSWORD``/``LAB_DB_USER`` from the Secret and
  ``LAB_DB_NAME``, the ``sqlcmd -Q "SELECT 1"`` readiness probe every second, claim
  template ``data`` mounted at ``/var/opt/mssql`` (claims are retained when the set
  goes, Kubernetes' default, so data outlives the instance object), and the volume
  ``backups`` (PVC ``<name>-backups``, the lab's object store for backups and the WAL
  archive) mounted at ``/var/opt/mssql/backup``. While the instance carries the
  annotation ``mssql.example.com/restoring`` (a restore is replacing its data) or
  ``mssql.example.com/restore-failed`` (a restore into it failed: it is kept stopped
  for inspection, see :mod:`lab.operator.restores`) the set has 0 replicas.
* PVC ``<name>-backups`` (made by the operator, outlives the instance like the data).

Only the mutable parts of a StatefulSet (replicas, template) are compared and
updated; the hash of what the operator wants is kept in the annotation
``mssql.example.com/spec-hash``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import string
from typing import Any

from common.crd import CrdCoordinates
from lab.kubeclient import Kind

__all__ = [
    "API_VERSION",
    "BACKUP_MOUNT",
    "CRD",
    "DATA_MOUNT",
    "DB_USER",
    "ENGINE_IMAGE",
    "GROUP",
    "INSTANCES",
    "INSTANCE_LABEL",
    "MANAGED_BY",
    "PORT_ANNOTATION",
    "READINESS_PROBE",
    "RESTORE_FAILED_ANNOTATION",
    "RESTORE_FAILED_REASON_ANNOTATION",
    "RESTORING_ANNOTATION",
    "SPEC_HASH_ANNOTATION",
    "backups_claim",
    "claim_spec_of",
    "database_of",
    "desired_backups_claim",
    "desired_secret",
    "desired_service",
    "desired_statefulset",
    "managed_labels",
    "new_password",
    "secret_name",
    "selector_labels",
    "spec_hash",
]

Obj = dict[str, Any]

CRD = CrdCoordinates()  # the lab serves the reference CRDs, so their default coordinates
GROUP = CRD.group
VERSION = CRD.version
API_VERSION = CRD.api_version
INSTANCES = Kind(GROUP, VERSION, CRD.plural)
ENGINE_IMAGE = "mssql-lab/engine:15"
DATA_MOUNT = "/var/opt/mssql"
BACKUP_MOUNT = "/var/opt/mssql/backup"
DB_USER = "harness"
DEFAULT_DATABASE = "harness"
DEFAULT_SIZE = "1Gi"
INSTANCE_LABEL = f"{GROUP}/instance"
PORT_ANNOTATION = f"{GROUP}/port"
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
VERSION_ANNOTATION = f"{GROUP}/version"
RESTORING_ANNOTATION = f"{GROUP}/restoring"
RESTORE_FAILED_ANNOTATION = f"{GROUP}/restore-failed"
RESTORE_FAILED_REASON_ANNOTATION = f"{GROUP}/restore-failed-reason"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mssql-lab-operator"}
READINESS_PROBE: Obj = {
    "exec": {"command": ["/opt/mssql-tools18/bin/sqlcmd", "-Q", "SELECT 1"]},
    "periodSeconds": 1,
}
DEFAULT_RESOURCES: Obj = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"cpu": "2", "memory": "2Gi"},
}


def selector_labels(name: str) -> dict[str, str]:
    return {"app": "mssql", INSTANCE_LABEL: name}


def managed_labels(name: str) -> dict[str, str]:
    return {**selector_labels(name), **MANAGED_BY}


def secret_name(name: str) -> str:
    return f"{name}-credentials"


def backups_claim(name: str) -> str:
    return f"{name}-backups"


def database_of(instance: Obj) -> str:
    return str((instance.get("spec") or {}).get("database") or DEFAULT_DATABASE)


def new_password(length: int = 24) -> str:
    """Letters and digits only, so it needs no quoting in ODBC strings or SQL."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def spec_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _owner(instance: Obj) -> Obj:
    md = instance["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "MSSQLInstance",
        "name": md["name"],
        "uid": md["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(instance: Obj, name: str, annotations: dict[str, str] | None = None) -> Obj:
    md = instance["metadata"]
    meta: Obj = {
        "name": name,
        "namespace": md["namespace"],
        "labels": managed_labels(md["name"]),
        "ownerReferences": [_owner(instance)],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def desired_secret(instance: Obj, password: str) -> Obj:
    name = instance["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(instance, secret_name(name)),
        "type": "Opaque",
        "stringData": {"username": DB_USER, "password": password},
    }


def desired_service(instance: Obj, port: int) -> Obj:
    name = instance["metadata"]["name"]
    spec: Obj = {
        "type": "ClusterIP",
        "selector": selector_labels(name),
        "ports": [{"name": "mssql", "port": port, "targetPort": "mssql", "protocol": "TCP"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(instance, name, {SPEC_HASH_ANNOTATION: spec_hash(spec)}),
        "spec": spec,
    }


def _pod_template(instance: Obj, port: int) -> Obj:
    md, spec = instance["metadata"], instance.get("spec") or {}
    name = md["name"]
    secret = secret_name(name)
    container: Obj = {
        "name": "mssql",
        "image": ENGINE_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "mssql", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {"name": "ACCEPT_EULA", "value": "Y"},
            {"name": "MSSQL_TCP_PORT", "value": str(port)},
            {"name": "MSSQL_SA_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
            {"name": "LAB_DB_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
            {"name": "LAB_DB_NAME", "value": database_of(instance)},
        ],
        "readinessProbe": copy.deepcopy(READINESS_PROBE),
        "resources": copy.deepcopy(spec.get("resources") or DEFAULT_RESOURCES),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_MOUNT},
            {"name": "backups", "mountPath": BACKUP_MOUNT},
        ],
    }
    template_meta: Obj = {"labels": selector_labels(name)}
    if spec.get("version"):
        template_meta["annotations"] = {VERSION_ANNOTATION: str(spec["version"])}
    pod_spec: Obj = {
        "containers": [container],
        "terminationGracePeriodSeconds": 30,
        "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": backups_claim(name)}}],
    }
    if spec.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(spec["nodeSelector"])
    return {"metadata": template_meta, "spec": pod_spec}


def desired_statefulset(instance: Obj, port: int) -> Obj:
    md = instance["metadata"]
    name = md["name"]
    claim_spec = claim_spec_of(instance)
    annotations = md.get("annotations") or {}
    stopped = bool(annotations.get(RESTORING_ANNOTATION) or annotations.get(RESTORE_FAILED_ANNOTATION))
    mutable = {"replicas": 0 if stopped else 1, "template": _pod_template(instance, port)}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(instance, name, {SPEC_HASH_ANNOTATION: spec_hash(mutable)}),
        "spec": {
            **mutable,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(name)},
            "updateStrategy": {"type": "RollingUpdate"},
            "volumeClaimTemplates": [
                {"metadata": {"name": "data", "labels": selector_labels(name)}, "spec": claim_spec}
            ],
        },
    }


def claim_spec_of(instance: Obj) -> Obj:
    """The data claim's spec (size and class from ``spec.storage``)."""
    storage = (instance.get("spec") or {}).get("storage") or {}
    claim_spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(storage.get("size") or DEFAULT_SIZE)}},
    }
    if storage.get("storageClassName"):
        claim_spec["storageClassName"] = storage["storageClassName"]
    return claim_spec


def desired_backups_claim(instance: Obj) -> Obj:
    """PVC ``<name>-backups``: not owned by the instance, so backups outlive it."""
    name = instance["metadata"]["name"]
    meta = _meta(instance, backups_claim(name))
    meta.pop("ownerReferences")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": claim_spec_of(instance),
    }
