"""MSSQLRestore: point-in-time restore into a target instance, and what a failed one leaves.

One :meth:`Restores.step` per restore per operator pass, idempotent (see
:mod:`lab.operator.protection`). The steps: checks (reasons of the contract) -> target
created when ``createTarget`` (labelled ``mssql.example.com/role: restore-target``, so
nothing takes it for a tenant) -> target annotated ``mssql.example.com/restoring`` (its
StatefulSet goes to 0) -> once its pod is gone, Job ``<name>-restore`` -> when it
completes the annotation is removed, ``achievedRestorePoint`` and ``backupId`` come
from the store -> ``Completed`` once the target's pod is Ready again. When the newest
full backup before ``targetTime`` failed its checksum the executor restores from an
older intact one; the restore then carries the condition ``FallbackToOlderFull``
naming the skipped backup and why.

**A failed restore.** Its ``status.reason`` is the executor's own reason, read from
the source's store (``restores/<name>.failed.json``): the server's FATAL line, the
missing or changed WAL segment, the checksum mismatch; the Job's
"BackoffLimitExceeded" only when the executor recorded nothing. The condition
``Failed`` carries the same message.

The target is **kept, stopped and marked failed for inspection**, whether the operator
created it or it existed: its annotation ``mssql.example.com/restoring`` is replaced
by ``mssql.example.com/restore-failed: <restore>`` (and ``...-reason``), so its
StatefulSet stays at 0 replicas, its phase is ``RestoreFailed``, its ``Ready``
condition is ``False`` with reason ``RestoreFailed`` and a ``RestoreFailed`` condition
holds the reason. It never reports Ready with the restored data missing. Its volume
keeps what the restore left: the untouched previous ``data`` (empty for a created
target), the partial ``data.restoring`` and the server log ``restore-<name>.log``.
What a DBA does next: restore into it again (a new MSSQLRestore clears the mark when
it starts), delete it, or remove the annotation to start it on its previous data.

Events on the MSSQLRestore (component ``mssql-operator``): ``Created`` "Created
MSSQLInstance <target>" for a created target, ``RestoreStarted`` when its Job is
created, ``RestoreSucceeded`` with the achieved restore point, and a Warning
``RestoreFailed`` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.crd import RESTORE_TARGET, ROLE_LABEL
from lab.controllers.job import job_finished
from lab.errors import LabError
from lab.events import record
from lab.executor.restore import choose_full
from lab.executor.store import BackupStore, format_ts, parse_ts
from lab.kubeclient import Kind, KubeClient
from lab.operator.jobs import data_claim, desired_data_claim, job_failure, restore_job
from lab.operator.objects import (
    CRD,
    GROUP,
    INSTANCES,
    RESTORE_FAILED_ANNOTATION,
    RESTORE_FAILED_REASON_ANNOTATION,
    RESTORING_ANNOTATION,
    VERSION,
)

__all__ = ["RESTORES", "Restores"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]

RESTORES = Kind(GROUP, VERSION, CRD.restore_plural)
_DONE = ("Completed", "Failed")
COMPONENT = "mssql-operator"


def _event(client: KubeClient, restore: Obj, reason: str, message: str, etype: str = "Normal") -> None:
    about = {**restore, "apiVersion": f"{GROUP}/{VERSION}", "kind": "MSSQLRestore"}
    record(client, about, reason, message, type=etype, component=COMPONENT)


def _key(obj: Obj) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _ready_pod(pod: Obj | None) -> bool:
    conds = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _fallback(skipped: Any, used: Any) -> list[Obj]:
    """The ``FallbackToOlderFull`` condition when the executor skipped damaged full backups."""
    if not skipped:
        return []
    why = "; ".join(f"{s.get('backupId')}: {s.get('reason')}" for s in skipped if isinstance(s, dict))
    message = f"skipped damaged full backup(s) ({why})"
    if used:
        message += f"; restored from the older full backup {used} and the log after it"
    return [
        {
            "type": "FallbackToOlderFull",
            "status": "True",
            "reason": "NewestFullBackupDamaged",
            "message": message,
        }
    ]


class Restores:
    """The MSSQLRestore half of :class:`lab.operator.protection.DataProtection`."""

    def __init__(
        self,
        client: KubeClient,
        clock: Callable[[], float],
        stores: Callable[[str, str], Path],
        patch_status: Callable[[Kind, Obj, Obj], None],
        create: Callable[[Kind | str, Obj, str], Obj | None],
    ) -> None:
        self.client = client
        self.clock = clock
        self.stores = stores
        self._patch_status = patch_status
        self._create = create

    def _fail(self, restore: Obj, reason: str, extra: list[Obj] | None = None) -> None:
        now = format_ts(self.clock())
        failed = {"type": "Failed", "status": "True", "reason": "RestoreFailed", "message": reason}
        conditions = [{**c, "lastTransitionTime": now} for c in [failed, *(extra or [])]]
        self._patch_status(
            RESTORES, restore, {"phase": "Failed", "reason": reason, "endTime": now, "conditions": conditions}
        )
        _event(self.client, restore, "RestoreFailed", reason, "Warning")

    def _annotate(self, target: Obj, values: dict[str, str | None]) -> None:
        ns, name = _key(target)
        updated = self.client.patch(INSTANCES, name, {"metadata": {"annotations": values}}, ns)
        target["metadata"] = updated["metadata"]

    def _set_restoring(self, target: Obj, value: str | None) -> None:
        """Start (``value``: the restore's name) or end a restore; either clears an earlier failure mark."""
        self._annotate(
            target,
            {
                RESTORING_ANNOTATION: value,
                RESTORE_FAILED_ANNOTATION: None,
                RESTORE_FAILED_REASON_ANNOTATION: None,
            },
        )

    def _mark_failed(self, target: Obj, name: str, reason: str) -> None:
        self._annotate(
            target,
            {
                RESTORING_ANNOTATION: None,
                RESTORE_FAILED_ANNOTATION: name,
                RESTORE_FAILED_REASON_ANNOTATION: reason,
            },
        )
        ns, target_name = _key(target)
        log.warning("restore %s/%s failed; target %s kept stopped: %s", ns, name, target_name, reason)

    def step(
        self, restore: Obj, instances: dict[Key, Obj], jobs: dict[Key, Obj], pods: dict[Key, Obj], *_: Any
    ) -> None:
        status = restore.get("status") or {}
        if status.get("phase") in _DONE:
            return
        ns, name = _key(restore)
        spec = restore.get("spec") or {}
        source_name, target_name = str(spec.get("source")), str(spec.get("target"))
        now = self.clock()
        job = jobs.get((ns, f"{name}-restore"))
        target = instances.get((ns, target_name))
        restoring = ((target or {}).get("metadata") or {}).get("annotations") or {}
        mine = target is not None and restoring.get(RESTORING_ANNOTATION) == name
        if job is None and not mine:
            self._begin(restore, instances, target, now)
            return
        if target is None:
            return  # just created; the next pass sees it
        if job is None:
            if (ns, f"{target_name}-0") in pods:
                return  # wait until the StatefulSet (now 0 replicas) removed the pod
            self._create("persistentvolumeclaims", desired_data_claim(target), ns)
            self._create("jobs", restore_job(restore), ns)
            log.info("restore %s/%s: started job %s-restore into %s", ns, name, name, data_claim(target_name))
            message = f"Started job {name}-restore into {data_claim(target_name)}"
            _event(self.client, restore, "RestoreStarted", message)
            return
        finished = job_finished(job)
        if finished is None:
            return
        store = BackupStore(self.stores(ns, source_name))
        result = store.restore_result(name) if finished == "Complete" else None
        if result is None:
            failure = store.restore_failure(name) or {}
            if finished == "Failed":
                reason = str(failure.get("reason") or job_failure(job))
            else:
                reason = f"job completed but the store holds no result for restore {name}"
            if mine:
                self._mark_failed(target, name, reason)
            self._fail(restore, reason, _fallback(failure.get("skippedBackups"), None))
            return
        found = {
            "achievedRestorePoint": result["achievedRestorePoint"],
            "backupId": result.get("backupId"),
            "conditions": [
                {**c, "lastTransitionTime": result.get("end") or format_ts(now)}
                for c in _fallback(result.get("skippedBackups"), result.get("backupId"))
            ],
        }
        if mine:
            self._set_restoring(target, None)
            self._patch_status(RESTORES, restore, found)
            return
        pod = pods.get((ns, f"{target_name}-0"))
        done_at = parse_ts(str((job.get("status") or {}).get("completionTime") or format_ts(now)))
        created = parse_ts(str((pod or {}).get("metadata", {}).get("creationTimestamp") or format_ts(0)))
        if _ready_pod(pod) and created >= done_at - 1:
            self._patch_status(
                RESTORES,
                restore,
                {**found, "phase": "Completed", "endTime": format_ts(now), "reason": None},
            )
            message = f"Restored {target_name} to {found['achievedRestorePoint']}"
            _event(self.client, restore, "RestoreSucceeded", message)

    def _begin(self, restore: Obj, instances: dict[Key, Obj], target: Obj | None, now: float) -> None:
        """The checks, then the target created or claimed, and the restore Running."""
        ns, name = _key(restore)
        spec = restore.get("spec") or {}
        source_name, target_name = str(spec.get("source")), str(spec.get("target"))
        source = instances.get((ns, source_name))
        if source is None:
            self._fail(restore, f"source instance {source_name} is unknown")
            return
        if target_name == source_name:
            self._fail(restore, "target must differ from source: restore into another instance")
            return
        if target is None and not spec.get("createTarget"):
            self._fail(
                restore,
                f"target instance {target_name} does not exist: create it first or set createTarget",
            )
            return
        try:
            target_time = parse_ts(str(spec.get("targetTime", "")))
            choose_full(BackupStore(self.stores(ns, source_name)), target_time)
        except LabError as exc:
            self._fail(restore, str(exc))
            return
        if target is None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "MSSQLInstance",
                "metadata": {
                    "name": target_name,
                    "labels": {ROLE_LABEL: RESTORE_TARGET},
                    "annotations": {RESTORING_ANNOTATION: name},
                },
                "spec": {k: v for k, v in (source.get("spec") or {}).items() if k not in ("port", "canary")},
            }
            self._create(INSTANCES, body, ns)
            log.info("restore %s/%s: created target instance %s", ns, name, target_name)
            _event(self.client, restore, "Created", f"Created MSSQLInstance {target_name}")
        elif ((target.get("metadata") or {}).get("annotations") or {}).get(RESTORING_ANNOTATION):
            self._patch_status(
                RESTORES,
                restore,
                {"phase": "Pending", "reason": f"target {target_name} is being restored by another restore"},
            )
            return
        else:
            self._set_restoring(target, name)
        running = {"phase": "Running", "startTime": format_ts(now), "reason": None}
        self._patch_status(RESTORES, restore, running)
