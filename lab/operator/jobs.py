"""The Jobs and claims the operator makes for backups and restores.

* Job ``<backup>-backup`` (owned by the MSSQLBackup): image ``mssql-lab/executor``,
  ``backup-full|backup-log --id <backup>``, env ``LAB_DB_HOST``/``LAB_DB_PORT`` (the
  instance's endpoint), ``LAB_DB_USER``/``PGPASSWORD`` from its credentials Secret, the
  instance's ``<instance>-backups`` claim at ``/var/opt/mssql/backup``; any node.
* Job ``<restore>-restore`` (owned by the MSSQLRestore): ``restore --name <restore>
  --target-time <t>``, the source's backups claim at ``/backup/source`` and the target's
  data claim ``data-<target>-0`` at ``/var/opt/mssql``.

Both: ``restartPolicy: Never``, ``backoffLimit: 3`` (a killed pod is retried; the
executor's steps are idempotent), labelled ``app.kubernetes.io/managed-by:
mssql-lab-operator`` and ``mssql.example.com/instance``.

**Lab knob: a backup Job that fails on purpose.** An MSSQLBackup annotated
``lab.mssql.example.com/fail-job: "<reason>"`` gets its Job as usual, with the extra
executor arguments ``--fail <reason>``: every pod writes the reason to its log and exits
1, so after ``backoffLimit + 1`` failed pods (retries are immediate in the lab) the Job
controller marks the Job ``Failed`` (reason ``BackoffLimitExceeded``) and the backup goes
``Failed`` with ``status.reason`` starting with ``<reason>``. It exists so alerting on
failed backup Jobs can be proven with a real failure; a real operator has no such knob.

:func:`record_backup_result` is the Event of a finished backup on its MSSQLBackup
(component ``mssql-operator``): ``BackupSucceeded`` (Normal) or ``BackupFailed``
(Warning) with the reason.
"""

from __future__ import annotations

import copy
from typing import Any

from lab.events import record
from lab.kubeclient import KubeClient
from lab.operator.objects import (
    API_VERSION,
    BACKUP_MOUNT,
    DATA_MOUNT,
    MANAGED_BY,
    backups_claim,
    claim_spec_of,
    secret_name,
    selector_labels,
)

__all__ = [
    "BACKOFF_LIMIT",
    "EXECUTOR_IMAGE",
    "FAIL_JOB_ANNOTATION",
    "backup_job",
    "data_claim",
    "desired_data_claim",
    "fail_job_reason",
    "job_failure",
    "record_backup_result",
    "restore_job",
]

Obj = dict[str, Any]

EXECUTOR_IMAGE = "mssql-lab/executor:1"
#: Backup and restore jobs declare what they need, like every workload the operator creates.
EXECUTOR_RESOURCES: Obj = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
BACKOFF_LIMIT = 3
SOURCE_MOUNT = "/backup/source"
FAIL_JOB_ANNOTATION = "lab.mssql.example.com/fail-job"
COMPONENT = "mssql-operator"


def record_backup_result(client: KubeClient, backup: Obj, succeeded: bool, message: str) -> None:
    """Record ``BackupSucceeded`` or a Warning ``BackupFailed`` on ``backup`` (never raises)."""
    about = {**backup, "apiVersion": API_VERSION, "kind": "MSSQLBackup"}
    reason, etype = ("BackupSucceeded", "Normal") if succeeded else ("BackupFailed", "Warning")
    record(client, about, reason, message, type=etype, component=COMPONENT)


def fail_job_reason(obj: Obj) -> str | None:
    """The reason of the fail-job knob on ``obj`` (a default one when the value is empty), else None."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if FAIL_JOB_ANNOTATION not in annotations:
        return None
    return str(annotations[FAIL_JOB_ANNOTATION] or "").strip() or f"failed on purpose ({FAIL_JOB_ANNOTATION})"


def job_failure(job: Obj) -> str:
    """What the Job controller says about a failed Job (the executor's own reason is in the store)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"job {job['metadata']['name']} failed: {cond.get('reason')} ({cond.get('message')})"
    return f"job {job['metadata']['name']} failed"


def data_claim(instance: str) -> str:
    return f"data-{instance}-0"


def _owner(obj: Obj) -> Obj:
    md = obj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": obj["kind"],
        "name": md["name"],
        "uid": md["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _job(owner: Obj, name: str, instance: str, container: Obj, volumes: list[Obj]) -> Obj:
    labels = {
        "app.kubernetes.io/name": "mssql-executor",
        "mssql.example.com/instance": instance,
        **MANAGED_BY,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [_owner(owner)],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 10,
                    "containers": [
                        {
                            "name": "executor",
                            "image": EXECUTOR_IMAGE,
                            "resources": copy.deepcopy(EXECUTOR_RESOURCES),
                            **container,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def backup_job(backup: Obj, host: str, port: int) -> Obj:
    spec = backup.get("spec") or {}
    instance, kind = str(spec["instance"]), str(spec["type"])
    secret = secret_name(instance)
    args = [f"backup-{kind}", "--id", backup["metadata"]["name"]]
    reason = fail_job_reason(backup)
    if reason is not None:
        args += ["--fail", reason]
    container: Obj = {
        "args": args,
        "env": [
            {"name": "LAB_DB_HOST", "value": host},
            {"name": "LAB_DB_PORT", "value": str(port)},
            {"name": "LAB_DB_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        ],
        "volumeMounts": [{"name": "backups", "mountPath": BACKUP_MOUNT}],
    }
    volumes = [{"name": "backups", "persistentVolumeClaim": {"claimName": backups_claim(instance)}}]
    return _job(backup, f"{backup['metadata']['name']}-backup", instance, container, volumes)


def restore_job(restore: Obj) -> Obj:
    spec = restore.get("spec") or {}
    source, target = str(spec["source"]), str(spec["target"])
    container: Obj = {
        "args": ["restore", "--name", restore["metadata"]["name"], "--target-time", str(spec["targetTime"])],
        "volumeMounts": [
            {"name": "source", "mountPath": SOURCE_MOUNT},
            {"name": "target", "mountPath": DATA_MOUNT},
        ],
    }
    volumes = [
        {"name": "source", "persistentVolumeClaim": {"claimName": backups_claim(source)}},
        {"name": "target", "persistentVolumeClaim": {"claimName": data_claim(target)}},
    ]
    return _job(restore, f"{restore['metadata']['name']}-restore", target, container, volumes)


def desired_data_claim(instance: Obj) -> Obj:
    """The claim the StatefulSet would make for ordinal 0 (made early for a restore)."""
    name = instance["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": data_claim(name),
            "namespace": instance["metadata"]["namespace"],
            "labels": {**selector_labels(name), **MANAGED_BY},
        },
        "spec": claim_spec_of(instance),
    }
