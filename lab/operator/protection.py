"""Backups, backup policies and point-in-time restores: the operator's second half.

One :meth:`DataProtection.reconcile_all` per operator pass, idempotent, safe to run
again after an operator restart at any point (Jobs are found by name, objects made
with fixed names, a 409 on create means "already there").

* **MSSQLBackup** -> Job ``<name>-backup`` (see :mod:`lab.operator.jobs`) once the
  instance is Ready; ``Running`` with ``startTime`` while it runs; when it completes the
  result is read from the instance's backup store (the operator reads the store as a
  real operator reads its object store) -> ``Completed`` with ``backupId`` (= the
  object's name), ``startTime``, ``endTime``, ``coveredFrom``, ``coveredTo``,
  ``coveredRanges`` (the stretches a log backup really covers: more than one when WAL
  was missing from the archive, see :mod:`lab.executor.wal`), ``missingSegments``,
  ``checksum``; a missing instance or a failed Job -> ``Failed`` with ``reason``. The
  lab knob ``lab.mssql.example.com/fail-job: "<reason>"`` makes its Job fail on purpose
  (see :mod:`lab.operator.jobs`); the ``reason`` then starts with ``<reason>``.
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
* **MSSQLRestore** -> see :mod:`lab.operator.restores` (the steps, and the policy for
  the target of a failed restore: kept, stopped and marked ``RestoreFailed``).
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
from lab.executor.store import BackupStore, format_ts, parse_ts
from lab.kubeclient import ApiError, Kind, KubeClient
from lab.operator.jobs import backup_job, fail_job_reason, job_failure, record_backup_result
from lab.operator.metrics import OperatorMetrics
from lab.operator.objects import (
    CRD,
    GROUP,
    MANAGED_BY,
    PORT_ANNOTATION,
    VERSION,
)
from lab.operator.restores import RESTORES, Restores

__all__ = ["BACKUPS", "POLICIES", "RESTORES", "DataProtection", "store_root"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]

BACKUPS = Kind(GROUP, VERSION, CRD.backup_plural)
POLICIES = Kind(GROUP, VERSION, CRD.backup_policy_plural)
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


def _port(instance: Obj) -> int | None:
    value = (instance.get("status") or {}).get("port") or (instance.get("spec") or {}).get("port")
    if value is None:
        value = (instance["metadata"].get("annotations") or {}).get(PORT_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class DataProtection:
    """Reconciles MSSQLBackup, MSSQLBackupPolicy and MSSQLRestore objects."""

    def __init__(
        self,
        client: KubeClient,
        host: str,
        clock: Callable[[], float] = time.time,
        stores: Callable[[str, str], Path] = store_root,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.client = client
        self.host = host
        self.clock = clock
        self.stores = stores
        self.metrics = metrics or OperatorMetrics()
        self.restores = Restores(client, clock, stores, self._patch_status, self._create)

    def reconcile_all(self, instances: list[Obj], pods: dict[Key, Obj]) -> None:
        policies = self.client.list(POLICIES)
        backups = self.client.list(BACKUPS)
        restores = self.client.list(RESTORES)
        try:
            self._reconcile(instances, pods, policies, backups, restores)
        finally:
            self.metrics.backups(backups, policies)

    def _reconcile(
        self,
        instances: list[Obj],
        pods: dict[Key, Obj],
        policies: list[Obj],
        backups: list[Obj],
        restores: list[Obj],
    ) -> None:
        if not (policies or backups or restores):
            return
        by_key = {_key(i): i for i in instances}
        jobs = {_key(j): j for j in self.client.list("jobs", labels=_MANAGED)}
        for kind, items, step in (
            ("MSSQLBackup", backups, self._backup),
            ("MSSQLBackupPolicy", policies, self._policy),
            ("MSSQLRestore", restores, self.restores.step),
        ):
            for obj in items:
                if obj["metadata"].get("deletionTimestamp") is not None:
                    continue
                try:
                    step(obj, by_key, jobs, pods, backups)
                except (ApiError, LabError, OSError) as exc:
                    self.metrics.reconciled(kind, failed=True)
                    if isinstance(exc, ApiError) and exc.code == 0:
                        raise
                    log.warning("%s %s/%s: %s", kind, *_key(obj), exc)
                else:
                    self.metrics.reconciled(kind)

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
                record_backup_result(self.client, backup, False, reason)
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
                job_failure(job)
                if finished == "Failed"
                else f"job completed but backup {name} is not in the store"
            )
            knob = fail_job_reason(backup)
            if finished == "Failed" and knob is not None:
                reason = f"{knob}; {reason}"
            self._patch_status(BACKUPS, backup, {"phase": "Failed", "reason": reason, "endTime": now})
            record_backup_result(self.client, backup, False, reason)
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
                "coveredRanges": meta.get("ranges")
                or [{"from": meta["coveredFrom"], "to": meta["coveredTo"]}],
                "missingSegments": meta.get("missing") or [],
                "checksum": meta["checksum"],
                "reason": None,
            },
        )
        record_backup_result(self.client, backup, True, f"Backup {name} completed: {meta['id']}")

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
