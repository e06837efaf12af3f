"""Backups, backup policies and point-in-time restores: the operator's second half.

One :meth:`DataProtection.reconcile_all` per operator pass, idempotent, safe to run
again after an operator restart at any point (Jobs are found by name, objects made
with fixed names, a 409 on create means "already there").

* **MSSQLBackup** -> Job ``<name>-backup`` (see :mod:`lab.operator.jobs`) once the
  instance is Ready; ``Running`` with ``startTime`` while it runs; when it completes the
  result is read from the instance's backup store (the operator reads the store as a
  real operator reads its object store) -> ``Completed`` with ``backupId`` (= the
  object's name), ``startTime``, ``endTime``, ``coveredFrom``, ``coveredTo``,
  ``checksum``; a missing instance or a failed Job -> ``Failed`` with ``reason``.
* **MSSQLBackupPolicy** -> ``Ready`` while its instance is Ready, else ``Pending``
  (``Failed`` for an unparsable schedule). The operator itself creates the
  MSSQLBackup objects (no CronJobs: log intervals are in seconds): a first full at
  once, then ``<policy>-full-<minute>`` at each ``fullSchedule`` time and
  ``<policy>-log-<n>`` every ``logIntervalSeconds`` (one at a time). Status:
  ``lastFull``/``lastLog`` (endTime of the newest completed), ``nextRun``,
  ``failures`` (failed backups of the policy), ``conditions``, ``observedGeneration``.
  Retention: completed fulls beyond ``retention.fullBackups`` or older than
  ``retention.days`` (the newest is always kept) are deleted with their store folder,
  and log backups that end before the oldest kept full are deleted.
* **MSSQLRestore** -> checks (reasons of the contract) -> target created when
  ``createTarget`` -> target annotated ``mssql.example.com/restoring`` (its StatefulSet
  goes to 0) -> once its pod is gone, Job ``<name>-restore`` -> when it completes the
  annotation is removed, ``achievedRestorePoint`` comes from the store -> ``Completed``
  once the target's pod is Ready again.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.controllers.cron import CronSchedule
from lab.controllers.job import job_finished
from lab.errors import LabError
from lab.executor.restore import choose_full
from lab.executor.store import BackupStore, format_ts, parse_ts
from lab.kubeclient import ApiError, Kind, KubeClient
from lab.operator.jobs import backup_job, data_claim, desired_data_claim, restore_job
from lab.operator.objects import (
    CRD,
    GROUP,
    INSTANCES,
    MANAGED_BY,
    PORT_ANNOTATION,
    RESTORING_ANNOTATION,
    VERSION,
)

__all__ = ["BACKUPS", "POLICIES", "RESTORES", "DataProtection", "store_root"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]

BACKUPS = Kind(GROUP, VERSION, CRD.backup_plural)
POLICIES = Kind(GROUP, VERSION, CRD.backup_policy_plural)
RESTORES = Kind(GROUP, VERSION, CRD.restore_plural)
POLICY_LABEL = f"{GROUP}/policy"
_MANAGED = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
_DONE = ("Completed", "Failed")


def store_root(namespace: str, instance: str) -> Path:
    """The folder of ``instance``'s backups claim (``$LAB_VOLUMES`` or ``<lab>/cluster/volumes``)."""
    base = os.environ.get("LAB_VOLUMES")
    if not base:
        from lab.paths import lab_dir

        base = str(lab_dir() / "cluster" / "volumes")
    return Path(base) / namespace / f"{instance}-backups"


def _key(obj: Obj) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _ready_pod(pod: Obj | None) -> bool:
    conds = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _port(instance: Obj) -> int | None:
    value = (instance.get("status") or {}).get("port") or (instance.get("spec") or {}).get("port")
    if value is None:
        value = (instance["metadata"].get("annotations") or {}).get(PORT_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _job_reason(job: Obj) -> str:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"job {job['metadata']['name']} failed: {cond.get('reason')} ({cond.get('message')})"
    return f"job {job['metadata']['name']} failed"


class DataProtection:
    """Reconciles MSSQLBackup, MSSQLBackupPolicy and MSSQLRestore objects."""

    def __init__(
        self,
        client: KubeClient,
        host: str,
        clock: Callable[[], float] = time.time,
        stores: Callable[[str, str], Path] = store_root,
    ) -> None:
        self.client = client
        self.host = host
        self.clock = clock
        self.stores = stores

    def reconcile_all(self, instances: list[Obj], pods: dict[Key, Obj]) -> None:
        policies = self.client.list(POLICIES)
        backups = self.client.list(BACKUPS)
        restores = self.client.list(RESTORES)
        if not (policies or backups or restores):
            return
        by_key = {_key(i): i for i in instances}
        jobs = {_key(j): j for j in self.client.list("jobs", labels=_MANAGED)}
        for kind, items, step in (
            ("backup", backups, self._backup),
            ("policy", policies, self._policy),
            ("restore", restores, self._restore),
        ):
            for obj in items:
                if obj["metadata"].get("deletionTimestamp") is not None:
                    continue
                try:
                    step(obj, by_key, jobs, pods, backups)
                except (ApiError, LabError, OSError) as exc:
                    if isinstance(exc, ApiError) and exc.code == 0:
                        raise
                    log.warning("%s %s/%s: %s", kind, *_key(obj), exc)

    # -- helpers ---------------------------------------------------------------------------

    def _patch_status(self, kind: Kind, obj: Obj, status: Obj) -> None:
        old = obj.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()):
            return
        ns, name = _key(obj)
        self.client.patch(kind, name, {"status": status}, ns, sub="status")
        obj["status"] = {**old, **status}
        if old.get("phase") != status.get("phase", old.get("phase")):
            log.info(
                "%s %s/%s: %s -> %s", kind.plural, ns, name, old.get("phase") or "-", status.get("phase")
            )

    def _create(self, kind: Kind | str, body: Obj, ns: str) -> Obj | None:
        try:
            return self.client.create(kind, body, ns)
        except ApiError as exc:
            if exc.code != 409:
                raise
            return None

    # -- MSSQLBackup -----------------------------------------------------------------------

    def _backup(self, backup: Obj, instances: dict[Key, Obj], jobs: dict[Key, Obj], *_: Any) -> None:
        status = backup.get("status") or {}
        if status.get("phase") in _DONE:
            return
        ns, name = _key(backup)
        spec = backup.get("spec") or {}
        instance = instances.get((ns, str(spec.get("instance"))))
        now = format_ts(self.clock())
        job = jobs.get((ns, f"{name}-backup"))
        if job is None:
            if instance is None:
                reason = f"instance {spec.get('instance')} does not exist"
                self._patch_status(BACKUPS, backup, {"phase": "Failed", "reason": reason, "endTime": now})
                return
            port = _port(instance)
            if (instance.get("status") or {}).get("phase") != "Ready" or port is None:
                self._patch_status(
                    BACKUPS,
                    backup,
                    {
                        "phase": "Pending",
                        "reason": f"waiting for instance {spec.get('instance')} to be Ready",
                    },
                )
                return
            self._create("jobs", backup_job(backup, self.host, port), ns)
            log.info("backup %s/%s: started job %s-backup", ns, name, name)
            self._patch_status(BACKUPS, backup, {"phase": "Running", "startTime": now, "reason": None})
            return
        finished = job_finished(job)
        if finished is None:
            self._patch_status(
                BACKUPS,
                backup,
                {"phase": "Running", "startTime": status.get("startTime") or now, "reason": None},
            )
            return
        store = BackupStore(self.stores(ns, str(spec.get("instance"))))
        meta = store.result(name) if finished == "Complete" else None
        if meta is None:
            reason = (
                _job_reason(job)
                if finished == "Failed"
                else f"job completed but backup {name} is not in the store"
            )
            self._patch_status(BACKUPS, backup, {"phase": "Failed", "reason": reason, "endTime": now})
            return
        self._patch_status(
            BACKUPS,
            backup,
            {
                "phase": "Completed",
                "backupId": meta["id"],
                "startTime": meta["start"],
                "endTime": meta["end"],
                "coveredFrom": meta["coveredFrom"],
                "coveredTo": meta["coveredTo"],
                "checksum": meta["checksum"],
                "reason": None,
            },
        )

    # -- MSSQLBackupPolicy -----------------------------------------------------------------

    def _policy(
        self, policy: Obj, instances: dict[Key, Obj], _jobs: Any, _pods: Any, backups: list[Obj]
    ) -> None:
        ns, name = _key(policy)
        md, spec = policy["metadata"], policy.get("spec") or {}
        now = self.clock()
        mine = [
            b
            for b in backups
            if b["metadata"]["namespace"] == ns
            and (b["metadata"].get("labels") or {}).get(POLICY_LABEL) == name
        ]
        instance = instances.get((ns, str(spec.get("instance"))))
        next_run: float | None = None
        try:
            schedule = CronSchedule.parse(str(spec.get("fullSchedule", "")))
        except LabError as exc:
            phase, ready, reason, message = "Failed", "False", "InvalidSchedule", str(exc)
        else:
            if instance is None:
                phase, ready, reason = "Pending", "False", "InstanceNotFound"
                message = f"instance {spec.get('instance')} does not exist"
            elif (instance.get("status") or {}).get("phase") != "Ready":
                phase, ready, reason = "Pending", "False", "InstanceNotReady"
                message = f"instance {spec.get('instance')} is not Ready"
            else:
                phase, ready, reason, message = "Ready", "True", "Scheduling", "backups are scheduled"
                next_run = self._schedule(policy, schedule, mine, now)
                self._retention(policy, mine, now)
        done = [b for b in mine if (b.get("status") or {}).get("phase") == "Completed"]

        def _last(kind: str) -> str | None:
            ends = [str(b["status"]["endTime"]) for b in done if (b.get("spec") or {}).get("type") == kind]
            return max(ends, key=parse_ts) if ends else None

        old = policy.get("status") or {}
        previous: Obj = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
        status: Obj = {
            "phase": phase,
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": (
                        previous.get("lastTransitionTime") if previous.get("status") == ready else None
                    )
                    or format_ts(now),
                    "observedGeneration": md.get("generation", 1),
                }
            ],
            "lastFull": _last("full"),
            "lastLog": _last("log"),
            "nextRun": format_ts(next_run) if next_run is not None else None,
            "failures": sum(1 for b in mine if (b.get("status") or {}).get("phase") == "Failed"),
            "observedGeneration": md.get("generation", 1),
        }
        self._patch_status(POLICIES, policy, status)

    def _new_backup(self, policy: Obj, name: str, kind: str) -> None:
        ns = policy["metadata"]["namespace"]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MSSQLBackup",
            "metadata": {
                "name": name,
                "labels": {POLICY_LABEL: policy["metadata"]["name"], **MANAGED_BY},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "MSSQLBackupPolicy",
                        "name": policy["metadata"]["name"],
                        "uid": policy["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"instance": policy["spec"]["instance"], "type": kind},
        }
        if self._create(BACKUPS, body, ns) is not None:
            log.info("policy %s/%s: created %s backup %s", ns, policy["metadata"]["name"], kind, name)

    def _schedule(self, policy: Obj, schedule: CronSchedule, mine: list[Obj], now: float) -> float:
        """Create the backups that are due; the time of the next one."""
        name, spec = policy["metadata"]["name"], policy.get("spec") or {}
        created = parse_ts(policy["metadata"].get("creationTimestamp") or format_ts(now))
        names = {b["metadata"]["name"] for b in mine}

        def busy(kind: str) -> bool:
            return any(
                (b.get("spec") or {}).get("type") == kind
                and (b.get("status") or {}).get("phase") not in _DONE
                for b in mine
            )

        moment = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
        latest = schedule.latest(moment).replace(tzinfo=UTC).timestamp()
        fulls = [b for b in mine if (b.get("spec") or {}).get("type") == "full"]
        if not busy("full"):
            if not fulls:
                self._new_backup(policy, f"{name}-full-initial", "full")
            elif latest > created and f"{name}-full-{int(latest // 60)}" not in names:
                self._new_backup(policy, f"{name}-full-{int(latest // 60)}", "full")
        interval = max(1, int(spec.get("logIntervalSeconds") or 300))
        slot = int(now // interval)
        completed_full = any((b.get("status") or {}).get("phase") == "Completed" for b in fulls)
        if completed_full and not busy("log") and f"{name}-log-{slot}" not in names:
            self._new_backup(policy, f"{name}-log-{slot}", "log")
        next_full = schedule.next_after(moment).replace(tzinfo=UTC).timestamp()
        return min(next_full, (slot + 1) * interval)

    def _retention(self, policy: Obj, mine: list[Obj], now: float) -> None:
        ns = policy["metadata"]["namespace"]
        retention = (policy.get("spec") or {}).get("retention") or {}
        keep_n, days = retention.get("fullBackups"), retention.get("days")
        if not keep_n and not days:
            return
        fulls = sorted(
            (
                b
                for b in mine
                if (b.get("spec") or {}).get("type") == "full"
                and (b.get("status") or {}).get("phase") == "Completed"
            ),
            key=lambda b: parse_ts(b["status"]["endTime"]),
            reverse=True,
        )
        if not fulls:
            return
        kept, dropped = fulls[:1], list[Obj]()
        for b in fulls[1:]:
            too_many = keep_n is not None and len(kept) >= int(keep_n)
            too_old = days is not None and now - parse_ts(b["status"]["endTime"]) > int(days) * 86400
            (dropped if too_many or too_old else kept).append(b)
        oldest = parse_ts(kept[-1]["status"]["endTime"])
        logs = [
            b
            for b in mine
            if (b.get("spec") or {}).get("type") == "log"
            and (b.get("status") or {}).get("phase") == "Completed"
            and parse_ts(b["status"]["coveredTo"]) < oldest
        ]
        store = BackupStore(self.stores(ns, str(policy["spec"]["instance"])))
        for b in dropped:
            shutil.rmtree(store.full_dir(b["metadata"]["name"]), ignore_errors=True)
        for b in dropped + logs:
            try:
                self.client.delete(BACKUPS, b["metadata"]["name"], ns)
            except ApiError as exc:
                if exc.code != 404:
                    raise
            log.info(
                "policy %s/%s: retention removed backup %s",
                ns,
                policy["metadata"]["name"],
                b["metadata"]["name"],
            )

    # -- MSSQLRestore ----------------------------------------------------------------------

    def _fail_restore(self, restore: Obj, reason: str) -> None:
        self._patch_status(
            RESTORES, restore, {"phase": "Failed", "reason": reason, "endTime": format_ts(self.clock())}
        )

    def _set_restoring(self, target: Obj, value: str | None) -> None:
        ns, name = _key(target)
        updated = self.client.patch(
            INSTANCES, name, {"metadata": {"annotations": {RESTORING_ANNOTATION: value}}}, ns
        )
        target["metadata"] = updated["metadata"]

    def _restore(
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
            source = instances.get((ns, source_name))
            if source is None:
                self._fail_restore(restore, f"source instance {source_name} is unknown")
                return
            if target_name == source_name:
                self._fail_restore(restore, "target must differ from source: restore into another instance")
                return
            if target is None and not spec.get("createTarget"):
                self._fail_restore(
                    restore,
                    f"target instance {target_name} does not exist: create it first or set createTarget",
                )
                return
            try:
                target_time = parse_ts(str(spec.get("targetTime", "")))
                choose_full(BackupStore(self.stores(ns, source_name)), target_time)
            except LabError as exc:
                self._fail_restore(restore, str(exc))
                return
            if target is None:
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "MSSQLInstance",
                    "metadata": {"name": target_name, "annotations": {RESTORING_ANNOTATION: name}},
                    "spec": {
                        k: v for k, v in (source.get("spec") or {}).items() if k not in ("port", "canary")
                    },
                }
                self._create(INSTANCES, body, ns)
                log.info("restore %s/%s: created target instance %s", ns, name, target_name)
            elif restoring.get(RESTORING_ANNOTATION):
                self._patch_status(
                    RESTORES,
                    restore,
                    {
                        "phase": "Pending",
                        "reason": f"target {target_name} is being restored by another restore",
                    },
                )
                return
            else:
                self._set_restoring(target, name)
            self._patch_status(
                RESTORES, restore, {"phase": "Running", "startTime": format_ts(now), "reason": None}
            )
            return
        if target is None:
            return  # just created; the next pass sees it
        if job is None:
            if (ns, f"{target_name}-0") in pods:
                return  # wait until the StatefulSet (now 0 replicas) removed the pod
            self._create("persistentvolumeclaims", desired_data_claim(target), ns)
            self._create("jobs", restore_job(restore), ns)
            log.info("restore %s/%s: started job %s-restore into %s", ns, name, name, data_claim(target_name))
            return
        finished = job_finished(job)
        if finished is None:
            return
        if finished == "Failed":
            if mine:
                self._set_restoring(target, None)
            self._fail_restore(restore, _job_reason(job))
            return
        result = BackupStore(self.stores(ns, source_name)).restore_result(name)
        if result is None:
            if mine:
                self._set_restoring(target, None)
            self._fail_restore(restore, f"job completed but the store holds no result for restore {name}")
            return
        if mine:
            self._set_restoring(target, None)
            self._patch_status(RESTORES, restore, {"achievedRestorePoint": result["achievedRestorePoint"]})
            return
        pod = pods.get((ns, f"{target_name}-0"))
        done_at = parse_ts(str((job.get("status") or {}).get("completionTime") or format_ts(now)))
        created = parse_ts(str((pod or {}).get("metadata", {}).get("creationTimestamp") or format_ts(0)))
        if _ready_pod(pod) and created >= done_at - 1:
            self._patch_status(
                RESTORES,
                restore,
                {
                    "phase": "Completed",
                    "achievedRestorePoint": result["achievedRestorePoint"],
                    "endTime": format_ts(now),
                    "reason": None,
                },
            )
